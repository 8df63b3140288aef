//! What the worker tells operators: Prometheus metrics (served at `INFERQ_METRICS_BIND` when it
//! is set) and the description it publishes with every heartbeat (`GET /workers`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use inferq_shared::metrics::{CONTENT_TYPE, recorder};
use inferq_shared::queue::{EntryRef, WorkerInfo};
use inferq_shared::time::now_ms;

use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// Jobs this worker finished, for its heartbeat.
#[derive(Debug)]
pub(crate) struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    started_at: u64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started_at: now_ms(),
        }
    }

    /// Counts recorded outcomes (and the metric `inferq_jobs_finished_total`).
    pub(crate) fn finished(&self, model: &str, succeeded: u64, failed: u64) {
        self.succeeded.fetch_add(succeeded, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
        for (status, n) in [("succeeded", succeeded), ("failed", failed)] {
            if n > 0 {
                metrics::counter!("inferq_jobs_finished_total", "model" => model.to_owned(), "status" => status)
                    .increment(n);
            }
        }
    }

    /// The description published with a heartbeat.
    pub(crate) fn describe(&self, id: &str, models: &[String], load: Load) -> WorkerInfo {
        WorkerInfo {
            id: id.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            models: models.to_vec(),
            threads: load.threads,
            busy: load.busy,
            jobs_succeeded: self.succeeded.load(Ordering::Relaxed),
            jobs_failed: self.failed.load(Ordering::Relaxed),
            started_at: self.started_at,
            last_heartbeat: now_ms(),
        }
    }
}

/// The host name (`HOSTNAME`, else `/etc/hostname`).
pub(crate) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Records that the jobs at `entries` of `model` start now: their time in the queue (the
/// stream entry id is the time the job entered the queue).
pub(crate) fn started<'a>(model: &str, entries: impl Iterator<Item = &'a EntryRef>) {
    let now = now_ms();
    let queued = metrics::histogram!("inferq_job_queue_seconds", "model" => model.to_owned());
    for entry in entries {
        if let Some(at) = entry
            .id
            .split('-')
            .next()
            .and_then(|t| t.parse::<u64>().ok())
        {
            queued.record(now.saturating_sub(at) as f64 / 1000.0);
        }
    }
}

/// Records a batch run: its size and how long its jobs ran.
pub(crate) fn ran(model: &str, jobs: usize, took: Duration) {
    metrics::histogram!("inferq_batch_size", "model" => model.to_owned()).record(jobs as f64);
    let run = metrics::histogram!("inferq_job_run_seconds", "model" => model.to_owned());
    let secs = took.as_secs_f64();
    for _ in 0..jobs {
        run.record(secs);
    }
}

fn describe_metrics() {
    metrics::describe_counter!(
        "inferq_jobs_finished_total",
        "Jobs whose outcome this worker recorded, by model and status."
    );
    metrics::describe_histogram!(
        "inferq_job_queue_seconds",
        metrics::Unit::Seconds,
        "Time from entering the queue to starting, per job."
    );
    metrics::describe_histogram!(
        "inferq_job_run_seconds",
        metrics::Unit::Seconds,
        "Time from start to recorded outcome, per job."
    );
    metrics::describe_histogram!("inferq_batch_size", "Jobs per inference run.");
    metrics::describe_gauge!(
        "inferq_inference_threads_busy",
        "Inference threads running a batch right now."
    );
    metrics::describe_gauge!(
        "inferq_inference_threads",
        "Inference threads of this worker."
    );
}

/// Installs the metrics recorder (so the counters count from the start).
pub(crate) fn install() {
    recorder(describe_metrics);
}

/// The inference threads' load right now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) threads: usize,
    pub(crate) busy: usize,
}

/// Serves `GET /metrics`, and the probes `GET /livez` and `GET /readyz` ([`Health`]), on `bind`
/// until `stop`; `load` reads the threads' load at each scrape.
pub(crate) async fn serve(
    bind: SocketAddr,
    load: impl Fn() -> Load + Clone + Send + Sync + 'static,
    health: Arc<Health>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let handle = recorder(describe_metrics);
    let (live, ready) = (health.clone(), health);
    let app = Router::new()
        .route("/livez", get(move || async move { live.live() }))
        .route("/readyz", get(move || async move { ready.ready() }))
        .route(
            "/metrics",
            get(move || {
                let load = load();
                async move {
                    metrics::gauge!("inferq_inference_threads_busy").set(load.busy as f64);
                    metrics::gauge!("inferq_inference_threads").set(load.threads as f64);
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render())
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!(%bind, "serving /metrics, /livez and /readyz");
    tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serving.await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}
