//! Synchronous OIP inference under load, with binary tensors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::figures::{BODIES, LoadConfig, LoadResult, input_data};

/// The OIP variant: each client sends `POST /v2/models/<m>/infer` with a binary input and
/// binary outputs and counts a `200` carrying `Inference-Header-Content-Length` as success.
pub(super) async fn run(client: reqwest::Client, cfg: LoadConfig) -> anyhow::Result<LoadResult> {
    let bodies: Arc<Vec<(Vec<u8>, usize)>> = Arc::new(
        (0..BODIES.min(cfg.jobs.max(1)))
            .map(|i| {
                let header = json!({
                    "inputs": [{
                        "name": cfg.input,
                        "shape": [1, cfg.width],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": cfg.width * 4},
                    }],
                    "parameters": {"binary_data_output": true},
                });
                let mut body = serde_json::to_vec(&header).expect("JSON");
                let n = body.len();
                for v in input_data(i as u64, cfg.width) {
                    body.extend_from_slice(&v.to_le_bytes());
                }
                (body, n)
            })
            .collect(),
    );
    let url = Arc::new(format!("{}/v2/models/{}/infer", cfg.api_url, cfg.model));
    let cfg = Arc::new(cfg);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..cfg.concurrency.max(1))
        .map(|_| {
            let (client, bodies, cfg, next, url) = (
                client.clone(),
                bodies.clone(),
                cfg.clone(),
                next.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                let mut out = LoadResult::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cfg.jobs {
                        return out;
                    }
                    let began = Instant::now();
                    let (body, n) = &bodies[i % bodies.len()];
                    let result = async {
                        let resp = client
                            .post(url.as_str())
                            .header("inference-header-content-length", *n)
                            .body(body.clone())
                            .send()
                            .await?;
                        let code = resp.status();
                        let binary = resp
                            .headers()
                            .contains_key("inference-header-content-length");
                        let bytes = resp.bytes().await?;
                        anyhow::ensure!(
                            code == reqwest::StatusCode::OK && binary,
                            "HTTP {code}: {}",
                            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                        );
                        Ok(())
                    }
                    .await;
                    out.accepted += 1;
                    match result {
                        Ok(()) => {
                            out.succeeded += 1;
                            out.latencies.push(began.elapsed());
                        }
                        Err(e) => {
                            out.failed += 1;
                            out.note(format!("infer: {e:#}"));
                        }
                    }
                    out.wall = start.elapsed();
                    out.submit_wall = out.wall;
                }
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for t in tasks {
        total.merge(t.await.context("a load client panicked")?);
    }
    Ok(total)
}
