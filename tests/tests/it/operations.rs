//! The operator's view: `GET /workers`, `GET /queues`, the dead letters, and `/metrics` on the
//! API and on a worker, checked with Prometheus's own `promtool`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{App, linear_job, slow_job, spawn_app, test_models, worker_binary};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The API as its own process, so its metrics count only this test's requests (the in-process
/// APIs of the other tests share one recorder).
struct ApiProcess {
    child: Child,
    base: String,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_api_process(app: &App) -> ApiProcess {
    let bin = worker_binary().with_file_name("inferq-api");
    let port = free_port();
    let child = Command::new(bin)
        .env_clear()
        .env("INFERQ_REDIS_URL", app.redis.url())
        .env("INFERQ_NAMESPACE", &app.namespace)
        .env("INFERQ_BIND", format!("127.0.0.1:{port}"))
        .env("INFERQ_AUTH", "disabled")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "inferq-api did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ApiProcess { child, base }
}

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
    let deadline = Instant::now() + timeout;
    loop {
        let (_, body) = get_json(url).await;
        if ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url} never matched: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn workers_queues_and_metrics_report_what_ran() {
    let app = spawn_app().await;
    let api = spawn_api_process(&app).await;
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
    // 0.5-1 s each) that the worker's description, published every 2 s, is taken while one
    // runs.
    const SLOW: u64 = 6;
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

#[tokio::test]
async fn a_dead_letter_is_listed_retried_and_deleted() {
    let app = spawn_app().await;
    let env = [
        ("INFERQ_MODELS", "slow"),
        ("INFERQ_LEASE_MS", "500"),
        ("INFERQ_MAX_ATTEMPTS", "1"),
    ];
    let mut first = app.worker(&test_models(), &env);
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(41.0)).await;
    app.wait_status(&id, "running", Duration::from_secs(30))
        .await;
    // The worker dies mid-job; with one attempt allowed, the next worker dead-letters the job.
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let _second = app.worker(&test_models(), &env);
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(record["error"]["code"], "max_attempts_exceeded", "{record}");

    // An entry no worker can read becomes a dead letter without a job.
    let mut conn = app.redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(format!("{{{}}}:q:slow", app.namespace))
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (_, page) = poll_dead(&app, "/dead", |b| {
        b["dead_letters"].as_array().unwrap().len() == 2
    })
    .await;

    // Newest first, one per page.
    let (status, page1) = app.get("/dead?limit=1").await;
    assert_eq!(status, 200, "{page1}");
    let malformed = &page1["dead_letters"][0];
    assert_eq!(malformed["id"], Value::Null, "{page1}");
    assert_eq!(malformed["error"]["code"], "malformed_entry", "{page1}");
    assert_eq!(malformed["model"], "slow", "{page1}");
    assert_eq!(malformed["retryable"], false, "{page1}");
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = app.get(&format!("/dead?limit=1&cursor={cursor}")).await;
    let dead = &page2["dead_letters"][0];
    assert_eq!(dead["id"], id.as_str(), "{page2}");
    assert_eq!(dead["model"], "slow", "{page2}");
    assert_eq!(dead["error"]["code"], "max_attempts_exceeded", "{page2}");
    assert_eq!(dead["attempts"], 1, "{page2}");
    assert_eq!(dead["retryable"], true, "{page2}");
    assert!(
        dead["failed_at"].as_str().unwrap().ends_with('Z'),
        "{page2}"
    );
    assert_eq!(page2["next_cursor"], Value::Null, "{page2}");
    assert_eq!(page["dead_letters"][1]["id"], id.as_str(), "{page}");

    // The queue overview counts them and lists the failure.
    let (_, queues) = app.get("/queues").await;
    assert_eq!(queues["dead_letters"], 2, "{queues}");
    let failures = queues["recent_failures"].as_array().unwrap();
    assert!(
        failures
            .iter()
            .any(|f| f["id"] == id.as_str() && f["code"] == "max_attempts_exceeded"),
        "{queues}"
    );

    // Bad requests.
    for bad in [
        "/dead?limit=0",
        "/dead?limit=1001",
        "/dead?cursor=abc",
        "/dead?limit=x",
    ] {
        let (status, body) = app.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{bad}: {body}");
    }
    let dead_id = malformed["dead_id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post_json(&format!("/dead/{dead_id}/retry"), &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_retryable")),
        "{body}"
    );
    let (status, body) = app.post_json("/dead/nonsense/retry", &json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("dead_letter_not_found")),
        "{body}"
    );

    // Retry: same id, a new series of attempts, and it succeeds this time.
    let (status, body) = app
        .post_json(&format!("/dead/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"], id.as_str(), "{body}");
    assert_eq!(body["status_url"], format!("/status/{id}"), "{body}");
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
    assert_eq!(record["error"], Value::Null, "{record}");
    assert_eq!(
        record["result"]["outputs"][0]["data"],
        json!([42.0]),
        "{record}"
    );
    let (status, _) = app
        .post_json(&format!("/dead/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 404);

    // Delete.
    let (status, _) = app.delete(&format!("/dead/{dead_id}")).await;
    assert_eq!(status, 204);
    let (status, body) = app.delete(&format!("/dead/{dead_id}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("dead_letter_not_found")),
        "{body}"
    );
    let (_, page) = app.get("/dead").await;
    assert_eq!(page, json!({"dead_letters": [], "next_cursor": null}));
}

async fn poll_dead(app: &App, path: &str, ok: impl Fn(&Value) -> bool) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = app.get(path).await;
        if status == 200 && ok(&body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "{path} never matched: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
