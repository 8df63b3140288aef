//! The API's own metrics: jobs submitted, connections refused, and every request counted and
//! timed by its route template (served by `GET /metrics` with the queue's figures).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use inferq_shared::metrics::recorder;

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

/// What the recorder holds, in the Prometheus text format.
pub(crate) fn render() -> String {
    recorder(describe).render()
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
/// finished last by the `http::gate` middleware.
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
