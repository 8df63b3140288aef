//! Faults in the workers: a lease renewed after a self-reclaim, a model that cannot batch not
//! hoarded, a panic that fails only its jobs, a model retired when no worker serves it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{eventually_every, linear_job, slow_job, spawn_app, test_models};

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
    // Two seconds or more per attempt on any machine: the reclaim below happens while the
    // first attempt still runs.
    let mut job = slow_job(5.0);
    job["parameters"] = json!({"test_hook": "slow_decode"});
    let id = app.submit(&job).await;
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
    eventually_every(
        Duration::from_millis(5),
        Duration::from_secs(20),
        "the runner reclaims its job",
        async || {
            if app.job_field(&id, "attempts").await.as_deref() == Some("2") {
                return true;
            }
            let _: redis::Value = redis::cmd("XCLAIM")
                .arg(app.keys().stream("slow"))
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
            false
        },
    )
    .await;
    // Undo the last forced idle time (the runner's next renewal would, within lease/3); from
    // here on the other worker takes over any lease the runner stops renewing.
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(app.keys().stream("slow"))
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
