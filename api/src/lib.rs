//! The inferq HTTP API: validates jobs against the models workers publish, enqueues them in
//! Redis and answers their status. Pure async I/O; it never loads ONNX Runtime.

// The modules in layers, bottom first: each imports only from the layers before it.
// Errors, settings and the plumbing every layer may use.
mod config;
pub mod error;
mod json;
mod metrics;
mod notify;

// Who calls, and the models they may call.
mod caller;
mod models;

// The one submission path.
mod submit;

// What the process shares between requests.
pub mod state;

// Transport and middleware.
mod http;

// The Open Inference Protocol face.
mod oip;

// The OpenAI API face.
mod openai;

// The routes, one file per resource, and the router.
pub mod routes;

#[cfg(test)]
mod proptests;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use inferq_shared::queue::Queue;
use tokio::net::TcpListener;

pub use config::{AuthMode, Config};
pub use routes::openapi::openapi;
pub use state::AppState;

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(key) = config.admin_key.as_ref().filter(|k| !k.expose().is_empty()) {
        anyhow::ensure!(
            key.expose().chars().count() >= http::auth::MIN_ADMIN_KEY_LEN,
            "INFERQ_ADMIN_KEY must be at least {} characters",
            http::auth::MIN_ADMIN_KEY_LEN
        );
    }
    let queue = Queue::connect(&config.redis, std::time::Duration::ZERO)
        .await
        .context("configuring the Redis connection")?
        .with_retention(inferq_shared::queue::Retention {
            result_ttl: std::time::Duration::from_secs(config.result_ttl_secs),
        })
        .with_fetch_allow(&config.fetch_allow);
    queue
        .guard_partitions()
        .await
        .context("first contact with Redis (the connection settings, INFERQ_PARTITIONS)")?;
    if config.auth == AuthMode::Disabled {
        tracing::warn!(
            "INFERQ_AUTH=disabled: every client may submit, read and cancel every job, and \
             operate the queue; use it for local development only"
        );
    }
    metrics::install();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState::new(config.clone(), queue, stop_rx));
    state.spawn_event_listener();
    routes::listing::spawn_sweeper(state.queue.clone());
    let app = routes::router(state);
    let limits = http::server::ConnLimits {
        max_connections: config.max_connections.max(1),
        header_timeout: std::time::Duration::from_secs(config.header_timeout_secs.max(1)),
        // Room for the URI and the headers, each at its limit, so that the limits answer
        // with their JSON errors; only far larger heads get hyper's bare 431.
        max_head_bytes: 2 * (config.max_uri_bytes + config.max_header_bytes),
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        redis = %config.redis.describe(),
        namespace = %config.redis.namespace,
        "inferq-api listening"
    );
    // Long-polls see the flag and answer at once; then the server drains.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    http::server::serve(listener, app, limits, shutdown).await;
    Ok(())
}
