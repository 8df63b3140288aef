//! The HTTP load generator: C concurrent keep-alive clients share N jobs; each submits one job,
//! long-polls its status until it is terminal, then takes the next (a closed loop), or in
//! submit-only mode just submits as fast as it can. One file per way of loading the API: the
//! job API (`jobs`), bulk submission (`bulk`), OIP binary inference (`oip`); what they share
//! (the configuration, the figures, the inputs) is in `figures`.

mod bulk;
mod figures;
mod jobs;
mod oip;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use figures::{BODIES, WAIT_SECS};
pub(crate) use figures::{LoadConfig, LoadResult, input_data};

/// Drives the API until all `jobs` are submitted (and, unless submit-only, terminal or timed out).
pub(crate) async fn run(cfg: LoadConfig) -> anyhow::Result<LoadResult> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(cfg.concurrency)
        .timeout(Duration::from_secs(WAIT_SECS + 10))
        .build()
        .context("building the HTTP client")?;
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..BODIES.min(cfg.jobs.max(1)))
            .map(|i| {
                let mut body = json!({
                    "model": cfg.model,
                    "inputs": [{
                        "name": cfg.input,
                        "shape": [1, cfg.width],
                        "datatype": "FP32",
                        "data": input_data(i as u64, cfg.width),
                    }],
                });
                body.as_object_mut()
                    .expect("an object")
                    .extend(cfg.extra.clone());
                body.to_string()
            })
            .collect(),
    );
    if cfg.oip_binary {
        return oip::run(client, cfg).await;
    }
    if let Some(per) = cfg.bulk {
        return bulk::run(client, cfg, bodies, per).await;
    }
    jobs::run(client, cfg, bodies).await
}
