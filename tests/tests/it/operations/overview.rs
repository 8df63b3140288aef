//! `GET /workers`, `GET /queues` and `/metrics` on the API and on a worker (checked with
//! Prometheus's own `promtool`) report what ran.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ApiProcess, eventually_every, free_port, linear_job, slow_job, spawn_app, test_models,
};

async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get_text(url: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// `promtool check metrics` (lint included) must accept the exposition.
fn promtool_check(text: &str, what: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected the {what} metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `url` until `ok` holds for its JSON body, or fails after `timeout`.
async fn poll_json(url: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let what = format!("{url} matches");
    eventually_every(Duration::from_millis(100), timeout, what, async || {
        let (_, body) = get_json(url).await;
        if ok(&body) { Ok(body) } else { Err(body) }
    })
    .await
}

#[tokio::test]
async fn workers_queues_and_metrics_report_what_ran() {
    let app = spawn_app().await;
    // The API as its own process, so its metrics count only this test's requests (the
    // in-process APIs of the other tests share one recorder).
    let api = ApiProcess::start(&app, &[]).await;
    let metrics_port = free_port();
    let bind = format!("127.0.0.1:{metrics_port}");
    let worker = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "linear,slow"),
            ("INFERQ_THREADS", "1"),
            ("INFERQ_METRICS_BIND", &bind),
        ],
    );
    app.wait_models(&["linear", "slow"]).await;
    let base = &api.base;

    // One inference thread: the first slow job runs, the others wait. Enough of them (about
    // 0.4-1 s each, by the machine) that the worker's description, published every 2 s, is
    // taken while one runs.
    const SLOW: u64 = 12;
    let mut slow = Vec::new();
    for i in 0..SLOW {
        slow.push(app.submit(&slow_job(i as f32)).await);
    }
    app.wait_status(&slow[0], "running", Duration::from_secs(30))
        .await;
    let queues = poll_json(&format!("{base}/queues"), Duration::from_secs(5), |b| {
        b["queues"]["slow"]["depth"] == SLOW - 1 && b["queues"]["slow"]["running"] == 1
    })
    .await;
    let q = &queues["queues"]["slow"];
    assert!(q["oldest_age_seconds"].as_f64().unwrap() > 0.0, "{queues}");
    assert_eq!(q["workers"], 1, "{queues}");
    assert_eq!(queues["queues"]["linear"]["depth"], 0, "{queues}");
    let workers = poll_json(&format!("{base}/workers"), Duration::from_secs(5), |b| {
        b["workers"][0]["busy"] == 1
    })
    .await;
    let w = &workers["workers"][0];
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1, "{workers}");
    assert_eq!(w["id"], worker.id.as_str(), "{workers}");
    assert_eq!(w["pid"], worker.child.id(), "{workers}");
    assert_eq!(w["threads"], 1, "{workers}");
    assert_eq!(w["models"], json!(["linear", "slow"]), "{workers}");
    assert!(
        w["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{workers}"
    );
    assert!(
        w["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{workers}"
    );
    for t in ["started_at", "last_heartbeat"] {
        assert!(w[t].as_str().is_some_and(|s| s.ends_with('Z')), "{workers}");
    }

    let mut linear = Vec::new();
    for i in 0..10 {
        let r = reqwest::Client::new()
            .post(format!("{base}/jobs"))
            .json(&linear_job(&[[i as f32, 0.0, 0.0, 0.0]]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        linear.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in slow.iter().chain(&linear) {
        let record = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }
    // Counts cover whole seconds, so the last jobs show within about a second.
    let queues = poll_json(&format!("{base}/queues"), Duration::from_secs(5), |b| {
        b["queues"]["linear"]["completed_last_minute"] == 10
            && b["queues"]["slow"]["completed_last_minute"] == SLOW
    })
    .await;
    for m in ["linear", "slow"] {
        let q = &queues["queues"][m];
        assert_eq!(q["depth"], 0, "{queues}");
        assert_eq!(q["running"], 0, "{queues}");
        assert_eq!(q["oldest_age_seconds"], 0.0, "{queues}");
        let per_second = q["completed_per_second"].as_array().unwrap();
        assert_eq!(per_second.len(), 60, "{queues}");
        let sum: u64 = per_second.iter().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(json!(sum), q["completed_last_minute"], "{queues}");
    }
    assert_eq!(queues["dead_letters"], 0, "{queues}");
    assert_eq!(queues["recent_failures"], json!([]), "{queues}");
    poll_json(&format!("{base}/workers"), Duration::from_secs(5), |b| {
        b["workers"][0]["jobs_succeeded"] == 10 + SLOW
            && b["workers"][0]["jobs_failed"] == 0
            && b["workers"][0]["busy"] == 0
    })
    .await;

    // The API's metrics: its own counters and the figures read from Redis.
    let text = get_text(&format!("{base}/metrics")).await;
    promtool_check(&text, "API");
    let expect = [
        (r#"inferq_jobs_submitted_total{model="linear"}"#, 10.0),
        (
            r#"inferq_http_requests_total{method="POST",route="/jobs",status="202"}"#,
            10.0,
        ),
        (r#"inferq_queue_depth{model="linear"}"#, 0.0),
        (r#"inferq_queue_oldest_age_seconds{model="slow"}"#, 0.0),
        (r#"inferq_jobs_running{model="slow"}"#, 0.0),
        ("inferq_workers", 1.0),
        ("inferq_dead_letters", 0.0),
        (
            r#"inferq_http_request_duration_seconds_count{method="POST",route="/jobs"}"#,
            10.0,
        ),
    ];
    for (series, want) in expect {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    // Ids never become labels: the route template does.
    assert!(
        text.contains(r#"route="/queues""#) && !text.contains(&linear[0]),
        "{text}"
    );

    // The worker's metrics.
    let text = get_text(&format!("http://{bind}/metrics")).await;
    promtool_check(&text, "worker");
    let expect = [
        (
            r#"inferq_jobs_finished_total{model="linear",status="succeeded"}"#,
            10.0,
        ),
        (
            r#"inferq_jobs_finished_total{model="slow",status="succeeded"}"#,
            SLOW as f64,
        ),
        (
            r#"inferq_job_queue_seconds_count{model="slow"}"#,
            SLOW as f64,
        ),
        (r#"inferq_job_run_seconds_count{model="linear"}"#, 10.0),
        (r#"inferq_batch_size_sum{model="linear"}"#, 10.0),
        ("inferq_inference_threads_busy", 0.0),
        ("inferq_inference_threads", 1.0),
    ];
    for (series, want) in expect {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    // The slow model takes about 0.7 s per job: the run histogram saw it.
    let slow_run = sample(&text, r#"inferq_job_run_seconds_sum{model="slow"}"#).unwrap();
    assert!(slow_run > 1.0, "{slow_run}");
    // The later slow jobs waited for the ones before them.
    let waited = sample(&text, r#"inferq_job_queue_seconds_sum{model="slow"}"#).unwrap();
    assert!(waited > 1.0, "{waited}");
}
