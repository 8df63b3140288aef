//! `inferq wait` follows a job over its event stream: against a separate `inferq-api` process,
//! whose request counters show the stream was used and no status long-poll was.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{ApiProcess, AppOptions, cli_binary, slow_job, spawn_app_with, test_models};

/// `inferq_http_requests_total` for `GET <route>` as the API's `/metrics` shows it.
fn requests(metrics: &str, route: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("inferq_http_requests_total{"))
        .filter(|l| l.contains("method=\"GET\"") && l.contains(&format!("route=\"{route}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn inferq_wait_follows_the_event_stream() {
    // The in-process API is only the harness's Redis and namespace; the CLI talks to its own.
    let app = spawn_app_with(AppOptions::default()).await;
    let api = ApiProcess::start(&app, &[("INFERQ_METRICS_PUBLIC", "true")]).await;
    let base = api.base.clone();
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(1.5)).await;

    let out = tokio::process::Command::new(cli_binary())
        .args(["wait", &id, "--json"])
        .env("INFERQ_URL", &base)
        .env_remove("INFERQ_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("inferq wait did not finish")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["result"]["outputs"][0]["data"][0], 2.5);

    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(requests(&metrics, "/jobs/{id}/events"), 1, "{metrics}");
    assert_eq!(requests(&metrics, "/status/{id}"), 0, "{metrics}");
}
