//! W3C `traceparent` on submission: carried with the job through the queue (reclaims,
//! hand-backs, dead letters and their retries, scheduling), into the worker's job span and log lines;
//! spans exported over OTLP to a collector the test runs, by the real API and worker binaries.

mod logs;
mod otlp;
mod queue;

use serde_json::Value;

use crate::support::App;

pub(super) const TRACE_A: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

pub(super) const TRACE_B: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub(super) const TRACE_C: &str = "00-9f3a1c2b4d5e6f708192a3b4c5d6e7f8-1122334455667788-01";

pub(super) const TRACE_D: &str = "00-d1d2d3d4d5d6d7d8d9dadbdcdddedfe0-a1a2a3a4a5a6a7a8-01";

pub(super) fn trace_id(header: &str) -> &str {
    &header[3..35]
}

/// Submits `body` to `POST /jobs` with the given `traceparent` values; returns the job id.
pub(super) async fn submit_json(
    app: &App,
    base: &str,
    body: &Value,
    traceparents: &[&str],
) -> String {
    let mut req = app.http.post(format!("{base}/jobs")).json(body);
    for tp in traceparents {
        req = req.header("traceparent", *tp);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}
