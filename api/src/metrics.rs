//! `GET /metrics`: the API's own counters and request histogram, plus the queue figures read
//! from Redis at scrape time (at most once a second, shared with `GET /queues`), in the
//! Prometheus text format.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use inferq_shared::metrics::{CONTENT_TYPE, recorder};

use crate::error::{AppResult, ErrorResponse};
use crate::state::AppState;

fn describe() {
    metrics::describe_counter!(
        "inferq_jobs_submitted_total",
        "Jobs accepted by this API process, by model."
    );
    metrics::describe_counter!(
        "inferq_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    metrics::describe_counter!(
        "inferq_http_connections_refused_total",
        "Connections answered 503 (or closed) because the API was at INFERQ_MAX_CONNECTIONS."
    );
    metrics::describe_histogram!(
        "inferq_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and route template."
    );
    metrics::describe_gauge!(
        "inferq_queue_depth",
        "Jobs waiting (not started), by model; read from Redis."
    );
    metrics::describe_gauge!(
        "inferq_queue_oldest_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest waiting job, by model (0 when none waits); read from Redis."
    );
    metrics::describe_gauge!(
        "inferq_jobs_running",
        "Jobs started and not finished, by model; read from Redis."
    );
    metrics::describe_gauge!(
        "inferq_workers",
        "Live workers (a heartbeat within 10 s); read from Redis."
    );
    metrics::describe_gauge!(
        "inferq_dead_letters",
        "Entries in the dead-letter stream; read from Redis."
    );
}

/// Installs the recorder, so requests are counted from the start.
pub(crate) fn install() {
    recorder(describe);
}

/// Counts one accepted job.
pub(crate) fn submitted(model: &str) {
    metrics::counter!("inferq_jobs_submitted_total", "model" => model.to_owned()).increment(1);
}

pub(crate) fn connection_refused() {
    metrics::counter!("inferq_http_connections_refused_total").increment(1);
}

/// Counts and times every request by its route template (never the raw path, so ids do not
/// multiply the series); unmatched paths share the label `unmatched`. Started first and
/// finished last by [`crate::gate`].
pub(crate) struct RequestTimer {
    method: String,
    route: String,
    began: Instant,
}

impl RequestTimer {
    pub(crate) fn start(req: &Request) -> Self {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
        Self {
            method: req.method().as_str().to_owned(),
            route,
            began: Instant::now(),
        }
    }

    pub(crate) fn finish(self, res: &Response) {
        let status = res.status().as_u16().to_string();
        metrics::histogram!(
            "inferq_http_request_duration_seconds",
            "method" => self.method.clone(),
            "route" => self.route.clone()
        )
        .record(self.began.elapsed().as_secs_f64());
        metrics::counter!(
            "inferq_http_requests_total",
            "method" => self.method,
            "route" => self.route,
            "status" => status
        )
        .increment(1);
    }
}

/// Metrics in the Prometheus text format: the API's counters (`inferq_jobs_submitted_total`,
/// `inferq_http_requests_total`, `inferq_http_request_duration_seconds`) and the queue's
/// figures read from Redis (`inferq_queue_depth`, `inferq_queue_oldest_age_seconds`,
/// `inferq_jobs_running`, `inferq_workers`, `inferq_dead_letters`).
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4",
         content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> AppResult<Response> {
    let handle = recorder(describe);
    let overview = state.overview().await?;
    for m in &overview.models {
        let model = m.model.clone();
        metrics::gauge!("inferq_queue_depth", "model" => model.clone()).set(m.depth as f64);
        metrics::gauge!("inferq_queue_oldest_age_seconds", "model" => model.clone())
            .set(m.oldest_age_ms.unwrap_or(0) as f64 / 1000.0);
        metrics::gauge!("inferq_jobs_running", "model" => model).set(m.running as f64);
    }
    metrics::gauge!("inferq_workers").set(overview.workers as f64);
    metrics::gauge!("inferq_dead_letters").set(overview.dead_letters as f64);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response())
}
