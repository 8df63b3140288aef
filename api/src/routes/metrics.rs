//! `GET /metrics`: the API's own counters and request histogram, plus the queue figures read
//! from Redis at scrape time (at most once a second, shared with `GET /queues`), in the
//! Prometheus text format.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use inferq_shared::metrics::CONTENT_TYPE;

use crate::error::{AppResult, ErrorResponse};
use crate::state::AppState;

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
    // Installed first, so the gauges below are recorded.
    crate::metrics::install();
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
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        crate::metrics::render(),
    )
        .into_response())
}
