//! Regression tests for faults found by reading the code: each provokes the fault with real
//! processes and checks that nothing is lost, nothing loops and errors say what they are.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, assert_close, linear_expected, linear_job, slow_job, spawn_app, spawn_app_with,
    test_models,
};

fn stream(app: &crate::helpers::App, model: &str) -> String {
    format!("{{{}}}:q:{model}", app.namespace)
}

async fn xlen(app: &crate::helpers::App, key: &str) -> u64 {
    let mut conn = app.redis.conn().await;
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A worker whose lease on a job lapsed and that then reclaims that job
/// itself keeps renewing the new attempt after the stale one finishes: another worker does
/// not take it over (that used to cascade, one attempt after another, to
/// `max_attempts_exceeded` for jobs longer than the lease).
#[tokio::test]
async fn a_worker_that_reclaims_its_own_stalled_job_keeps_renewing_the_new_attempt() {
    let app = spawn_app().await;
    let env = [
        ("INFERQ_MODELS", "slow"),
        ("INFERQ_LEASE_MS", "300"),
        ("INFERQ_MAX_ATTEMPTS", "5"),
    ];
    let workers = [
        app.worker(&test_models(), &env),
        app.worker(&test_models(), &env),
    ];
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(5.0)).await;
    app.wait_status(&id, "running", Duration::from_secs(30))
        .await;
    let runner = app.job_worker(&id).await.unwrap();
    let (r, other) = if runner == workers[0].id {
        (&workers[0], &workers[1])
    } else {
        (&workers[1], &workers[0])
    };
    // The runner's lease lapses while it keeps running attempt 1: the test keeps marking the
    // entry idle for 10 s (faster than the runner renews it) until the runner's own reclaim
    // picks it up and starts attempt 2. The other worker is paused meanwhile, so it is the
    // runner that reclaims.
    other.signal("STOP");
    let entry = app.job_field(&id, "entry").await.unwrap();
    let mut conn = app.redis.conn().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.job_field(&id, "attempts").await.as_deref() != Some("2") {
        assert!(
            Instant::now() < deadline,
            "the runner never reclaimed its job"
        );
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(stream(&app, "slow"))
            .arg("workers")
            .arg(&r.id)
            .arg(0)
            .arg(&entry)
            .arg("IDLE")
            .arg(10_000)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Undo the last forced idle time (the runner's next renewal would, within lease/3); from
    // here on the other worker takes over any lease the runner stops renewing.
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(stream(&app, "slow"))
        .arg("workers")
        .arg(&r.id)
        .arg(0)
        .arg(&entry)
        .arg("IDLE")
        .arg(0)
        .arg("JUSTID")
        .query_async(&mut conn)
        .await
        .unwrap();
    other.signal("CONT");
    let record = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(
        record["attempts"], 2,
        "the new attempt lost its lease renewal: {record}"
    );
    assert_eq!(app.job_worker(&id).await.as_deref(), Some(r.id.as_str()));
    assert_eq!(record["result"]["outputs"][0]["data"], json!([6.0]));
}

/// A model that cannot batch is read one job per idle thread: two single-thread workers share
/// six slow jobs instead of the first one taking them all.
#[tokio::test]
async fn a_model_that_cannot_batch_is_not_hoarded_by_one_worker() {
    let app = spawn_app().await;
    // Every test model, so a batching model (max batch 32) sits beside the slow one.
    let env = [("INFERQ_THREADS", "1")];
    let a = app.worker(&test_models(), &env);
    let b = app.worker(&test_models(), &env);
    app.wait_models(&["slow", "linear"]).await;
    let jobs: Vec<Value> = (0..6).map(|i| slow_job(i as f32)).collect();
    let ids = app.submit_all(&jobs).await;
    let mut ran = [0, 0];
    for id in &ids {
        let record = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        match app.job_worker(id).await.as_deref() {
            Some(w) if w == a.id => ran[0] += 1,
            Some(w) if w == b.id => ran[1] += 1,
            other => panic!("job {id} ran on {other:?}"),
        }
    }
    assert!(ran[0] >= 2 && ran[1] >= 2, "jobs per worker: {ran:?}");
}

/// An unreadable stream entry between two valid ones: the valid jobs run, the bad entry goes
/// to the dead-letter stream with `malformed_entry`, and the stream ends up empty.
#[tokio::test]
async fn a_malformed_stream_entry_is_set_aside_and_its_neighbours_run() {
    let app = spawn_app().await;
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    // Paused, so all three entries wait and arrive in one read.
    w.signal("STOP");
    let first = app.submit(&linear_job(&[[1.0, 0.0, 0.0, 0.0]])).await;
    let mut conn = app.redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(stream(&app, "linear"))
        .arg("*")
        .arg("id")
        .arg("not-a-job-id")
        .query_async(&mut conn)
        .await
        .unwrap();
    let second = app.submit(&linear_job(&[[0.0, 1.0, 0.0, 0.0]])).await;
    w.signal("CONT");
    for (id, x) in [
        (&first, [1.0, 0.0, 0.0, 0.0]),
        (&second, [0.0, 1.0, 0.0, 0.0]),
    ] {
        let record = app.wait_done(id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_close(
            &record["result"]["outputs"][0]["data"],
            &linear_expected(&[x]),
            1e-5,
        );
    }
    let dead: redis::Value = redis::cmd("XRANGE")
        .arg(format!("{{{}}}:dead", app.namespace))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = format!("{dead:?}");
    assert!(text.contains("malformed_entry"), "{text}");
    assert!(text.contains("not-a-job-id"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while xlen(&app, &stream(&app, "linear")).await > 0 {
        assert!(Instant::now() < deadline, "the stream kept entries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis error that is not an outage (here WRONGTYPE) is a 500 `internal` with a generic
/// message and no Retry-After, not a 503 that clients would retry forever.
#[tokio::test]
async fn a_redis_error_that_is_not_an_outage_is_500_not_503() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    let mut conn = app.redis.conn().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{{{}}}:job:{id}", app.namespace))
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = app
        .http
        .get(format!("{}/status/{id}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("retry-after").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "internal", "message": "internal error"}})
    );
}

/// Redis dies while a worker waits to fill a batch: the job it already read is neither
/// dropped nor left pending forever; it runs once Redis is back.
#[tokio::test]
async fn a_redis_outage_while_a_batch_fills_loses_nothing() {
    let mut app = spawn_app_with(AppOptions {
        aof: true,
        ..Default::default()
    })
    .await;
    let _w = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "linear"),
            ("INFERQ_MAX_BATCH_DELAY_MS", "3000"),
        ],
    );
    app.wait_models(&["linear"]).await;
    let x = [2.0, 1.0, 0.0, -1.0];
    let id = app.submit(&linear_job(&[x])).await;
    // The worker now holds the job while it waits up to 3 s for batch-mates.
    tokio::time::sleep(Duration::from_millis(700)).await;
    app.redis.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    app.redis.restart();
    let record = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&[x]),
        1e-5,
    );
}

/// SIGTERM while Redis is down: the worker cannot record or hand back anything, yet it exits
/// within the grace period plus its bounded hand-back time.
#[tokio::test]
async fn sigterm_during_a_redis_outage_exits_within_the_grace_period() {
    let mut app = spawn_app().await;
    let mut w = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "slow"),
            ("INFERQ_SHUTDOWN_GRACE_SECS", "1"),
        ],
    );
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(1.0)).await;
    app.submit(&slow_job(2.0)).await;
    app.wait_status(&id, "running", Duration::from_secs(30))
        .await;
    app.redis.kill();
    let t = Instant::now();
    w.signal("TERM");
    assert_eq!(w.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "exit took {:?} with a 1 s grace period",
        t.elapsed()
    );
}

/// `GET /models` shows each model's live workers and last announcement; a model with no
/// worker still takes jobs; retiring it fails its waiting jobs and refuses new ones.
#[tokio::test]
async fn models_show_their_workers_and_can_be_retired() {
    let app = spawn_app().await;
    let mut w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    let (status, body) = app.get("/models").await;
    assert_eq!(status, 200);
    let slow = &body["models"][0];
    assert_eq!(
        (slow["name"].as_str(), slow["workers"].as_u64()),
        (Some("slow"), Some(1))
    );
    assert!(
        slow["last_seen"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );

    // A live worker: refused.
    let (status, body) = app.delete("/models/slow").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("model_in_use")),
        "{body}"
    );

    w.signal("TERM");
    assert_eq!(w.wait_exit(Duration::from_secs(30)), Some(0));
    let (_, body) = app.get("/models").await;
    assert_eq!(body["models"][0]["workers"], 0, "{body}");
    // No worker: jobs still queue (workers restart, autoscalers scale to zero).
    let waiting = app.submit(&slow_job(3.0)).await;

    let (status, body) = app.delete("/models/slow").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["failed_jobs"], 1, "{body}");
    let record = app.wait_done(&waiting, Duration::from_secs(5)).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "model_retired", "{record}");
    let (_, body) = app.get("/models").await;
    assert_eq!(body["models"], json!([]), "{body}");
    let (status, body) = app.post_json("/jobs", &slow_job(4.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unknown_model"))
    );
    let (status, body) = app.delete("/models/slow").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
}

/// NaN and ±Infinity travel as the strings "NaN", "Infinity", "-Infinity", in and out;
/// other strings are still invalid data.
#[tokio::test]
async fn non_finite_floats_are_strings_in_and_out() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let mut job = linear_job(&[[0.0; 4]]);
    job["inputs"][0]["data"] = json!(["NaN", 0, 0, 0]);
    let id = app.submit(&job).await;
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(
        record["result"]["outputs"][0]["data"],
        json!(["NaN", "NaN", "NaN"]),
        "{record}"
    );
    job["inputs"][0]["data"] = json!(["Infinity", 0, 0, 0]);
    let id = app.submit(&job).await;
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    // W[0][j] > 0, so +inf in x0 gives +inf in every output.
    assert_eq!(
        record["result"]["outputs"][0]["data"],
        json!(["Infinity", "Infinity", "Infinity"]),
        "{record}"
    );
    job["inputs"][0]["data"] = json!(["nan", 0, 0, 0]);
    let (status, body) = app.post_json("/jobs", &job).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_data"))
    );
}

/// A panic on an inference thread or in a batch task is logged with its message, fails the
/// jobs it hit with `internal`, and the worker keeps serving.
#[tokio::test]
async fn a_panic_fails_its_jobs_and_the_worker_keeps_serving() {
    let app = spawn_app().await;
    let mut w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear"), ("RUST_LOG", "warn")],
    );
    app.wait_models(&["linear"]).await;
    for hook in ["panic_inference", "panic_task"] {
        let mut job = linear_job(&[[1.0; 4]]);
        job["parameters"] = json!({ "test_hook": hook });
        let id = app.submit(&job).await;
        let record = app.wait_done(&id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "failed", "{record}");
        assert_eq!(record["error"]["code"], "internal", "{record}");
        assert_eq!(record["attempts"], 1, "{record}");
    }
    let x = [1.0, 2.0, 3.0, 4.0];
    let id = app.submit(&linear_job(&[x])).await;
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert!(w.child.try_wait().unwrap().is_none(), "the worker died");
    let log = w.log_text();
    assert!(
        log.contains("panic on the inference thread"),
        "inference panic not logged: {log}"
    );
    assert!(
        log.contains("panic in the batch task"),
        "task panic not logged: {log}"
    );
}

/// On shutdown the API answers waiting long-polls at once with the record as it stands, so
/// its drain fits a container's stop timeout.
#[tokio::test]
async fn api_shutdown_answers_long_polls_at_once() {
    let mut app = spawn_app().await;
    // A worker registers the model, then leaves: the job stays queued.
    let mut w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    w.signal("TERM");
    assert_eq!(w.wait_exit(Duration::from_secs(30)), Some(0));
    let id = app.submit(&slow_job(1.0)).await;
    let poll = {
        let (http, url) = (
            app.http.clone(),
            format!("{}/status/{id}?wait=50", app.base),
        );
        tokio::spawn(async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    assert!(
        app.stop_api(Duration::from_secs(10)).await,
        "the API did not stop"
    );
    let (status, record) = poll.await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(status, 200);
    assert_eq!(record["status"], "queued", "{record}");
}
