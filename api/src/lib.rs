//! The inferq HTTP API: validates jobs against the models workers publish, enqueues them in
//! Redis and answers their status. Pure async I/O; it never loads ONNX Runtime.

mod batch;
mod body;
mod dashboard;
pub mod error;
mod extract;
mod groups;
mod jobs;
mod listing;
mod metrics;
mod oip;
mod openapi;
mod ops;
pub mod record;
pub mod routes;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use inferq_shared::config::{LogConfig, RedisConfig};
use inferq_shared::queue::Queue;
use tokio::net::TcpListener;

pub use routes::openapi;
pub use state::AppState;

/// `inferq-api` configuration; every flag also reads an `INFERQ_…` environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "inferq-api", version, about = "inferq HTTP API")]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub log: LogConfig,

    /// Address to listen on.
    #[arg(long, env = "INFERQ_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Largest accepted request body in bytes; larger ones get 413.
    #[arg(long, env = "INFERQ_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most jobs one model's queue may hold (queued plus running) before submissions get 429.
    #[arg(long, env = "INFERQ_MAX_QUEUED", default_value_t = 100_000)]
    pub max_queued: u64,

    /// Seconds a finished job's record stays readable (used when cancelling; workers apply
    /// their own setting to jobs they finish).
    #[arg(long, env = "INFERQ_RESULT_TTL_SECS", default_value_t = 86_400)]
    pub result_ttl_secs: u64,

    /// Longest `?wait=` a status request may ask for, in seconds.
    #[arg(long, env = "INFERQ_MAX_WAIT_SECS", default_value_t = 60)]
    pub max_wait_secs: u64,

    /// Seconds an `Idempotency-Key` answers with the job it first created.
    #[arg(long, env = "INFERQ_IDEMPOTENCY_TTL_SECS", default_value_t = 86_400)]
    pub idempotency_ttl_secs: u64,

    /// Seconds a result stays in the result cache (`parameters.cache`).
    #[arg(long, env = "INFERQ_CACHE_TTL_SECS", default_value_t = 3600)]
    pub cache_ttl_secs: u64,

    /// Most jobs in one `POST /jobs/batch`.
    #[arg(long, env = "INFERQ_MAX_BATCH_JOBS", default_value_t = 1000)]
    pub max_batch_jobs: usize,
}

impl Config {
    /// Defaults for everything but Redis, as tests and embedders want them.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            redis,
            log: LogConfig::default(),
            bind: "127.0.0.1:0".into(),
            max_body_bytes: 16 * 1024 * 1024,
            max_queued: 100_000,
            result_ttl_secs: 86_400,
            max_wait_secs: 60,
            idempotency_ttl_secs: 86_400,
            cache_ttl_secs: 3600,
            max_batch_jobs: 1000,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let queue = Queue::connect(&config.redis, std::time::Duration::ZERO)
        .await
        .context("configuring the Redis connection")?;
    metrics::install();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState::new(config.clone(), queue, stop_rx));
    state.spawn_event_listener();
    listing::spawn_sweeper(state.queue.clone());
    let app = routes::router(state);
    tracing::info!(
        addr = %listener.local_addr()?,
        redis = %config.redis.redis_url,
        namespace = %config.redis.namespace,
        "inferq-api listening"
    );
    // Long-polls see the flag and answer at once; then the server drains.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    Ok(())
}
