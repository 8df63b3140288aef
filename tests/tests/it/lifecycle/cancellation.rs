//! Jobs that end without running to completion: cancelled while queued or running, or past
//! their deadline.

use std::time::Duration;

use serde_json::json;

use crate::support::{slow_job, spawn_app, test_models};

#[tokio::test]
async fn cancellation_of_queued_running_and_finished_jobs() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["slow"]).await;
    let running = app.submit(&slow_job(1.0)).await;
    let queued = app.submit(&slow_job(2.0)).await;
    let after = app.submit(&slow_job(3.0)).await;
    app.wait_status(&running, "running", Duration::from_secs(30))
        .await;

    let (status, record) = app.delete(&format!("/jobs/{queued}")).await;
    assert_eq!(
        (status, record["status"].as_str()),
        (200, Some("cancelled")),
        "{record}"
    );
    let (status, record) = app.delete(&format!("/jobs/{running}")).await;
    assert_eq!(
        (status, record["status"].as_str()),
        (200, Some("cancelled")),
        "{record}"
    );

    // The job queued after the cancelled one still runs; the cancelled ones never change again.
    let done = app.wait_done(&after, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded");
    let (_, r) = app.get(&format!("/status/{running}")).await;
    assert_eq!(r["status"], "cancelled", "{r}");
    assert!(
        r["result"].is_null(),
        "a cancelled job's result is discarded: {r}"
    );
    assert_eq!(r["attempts"], 1);
    let (_, q) = app.get(&format!("/status/{queued}")).await;
    assert_eq!(q["status"], "cancelled", "{q}");
    assert_eq!(q["attempts"], 0, "a cancelled queued job never runs: {q}");
    assert!(q["started_at"].is_null());

    let (status, body) = app.delete(&format!("/jobs/{after}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("job_finished")),
        "{body}"
    );
    let (status, body) = app.delete(&format!("/jobs/{running}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("job_finished")),
        "{body}"
    );
    let (status, body) = app.delete(&format!("/jobs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("job_not_found"))
    );
    let (status, body) = app.delete("/jobs/xyz").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_job_id"))
    );
    // Nothing is left in the queue.
    let mut conn = app.redis.conn().await;
    let len: u64 = redis::cmd("XLEN")
        .arg(app.keys().stream("slow"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0);
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_without_running() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["slow"]).await;
    let blocker = app.submit(&slow_job(0.0)).await;
    let mut late = slow_job(1.0);
    late["parameters"] = json!({"timeout_ms": 100});
    let late = app.submit(&late).await;
    let mut past = slow_job(2.0);
    past["parameters"] = json!({"deadline": 1_000_000_000_000u64});
    let past = app.submit(&past).await;
    let mut roomy = slow_job(3.0);
    roomy["parameters"] = json!({"timeout_ms": 600_000});
    let roomy = app.submit(&roomy).await;

    for id in [&late, &past] {
        let r = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["error"]["code"], "deadline_exceeded", "{r}");
        assert_eq!(r["attempts"], 0, "{r}");
        assert!(r["started_at"].is_null(), "{r}");
    }
    for id in [&blocker, &roomy] {
        assert_eq!(
            app.wait_done(id, Duration::from_secs(60)).await["status"],
            "succeeded"
        );
    }
}
