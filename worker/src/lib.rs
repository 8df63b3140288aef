//! The inferq worker: consumes jobs from Redis, batches them and runs ONNX models on dedicated
//! threads, then records outcomes. Redis I/O runs on tokio; inference never does.
//!
//! The layers, top down: [`worker`] wires and stops everything; each kind of job ([`batch`]:
//! model jobs, [`speech`]: the speech pipeline, [`embeddings`]: the text embeddings pipeline)
//! plugs into the one consume loop
//! ([`consume`]: read, begin, run, settle, leases) and runs on the inference side ([`infer`]:
//! ONNX Runtime, models, batches, threads; no Redis, no tokio). [`egress`], [`webhooks`] and
//! [`stats`] serve them.

mod batch;
mod config;
mod consume;
mod egress;
mod embeddings;
mod health;
#[cfg(feature = "test-hooks")]
mod hooks;
pub mod infer;
mod speech;
mod stats;
mod webhooks;
mod worker;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
pub use config::Config;
pub use webhooks::WebhookConfig;

/// Loads the models, starts the inference threads and consumes jobs until `shutdown`
/// completes; then finishes (or hands back) what it holds and returns.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let library = config.ort_library.clone();
    let dir = config.models_dir.clone();
    let only = config.models.clone();
    let defaults = infer::models::BatchDefaults {
        max_batch_size: config.max_batch_size.max(1),
        max_batch_delay: Duration::from_millis(config.max_batch_delay_ms),
    };
    let models = tokio::task::spawn_blocking(move || {
        infer::runtime::init_runtime(&library)?;
        infer::models::discover(&dir, &only, defaults)
    })
    .await
    .context("loading models")??;
    anyhow::ensure!(
        !models.is_empty(),
        "no models found in {} (expected <name>/model.onnx)",
        config.models_dir.display()
    );
    worker::Worker::start(config, models)
        .await?
        .run(shutdown)
        .await;
    Ok(())
}
