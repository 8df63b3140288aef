//! Redis failing and processes stopping: errors that are not outages, an outage while a batch
//! fills or a worker stops, and the API's shutdown answering long-polls at once.

use std::time::{Duration, Instant};

use inferq_shared::job::JobId;
use serde_json::{Value, json};

use crate::support::{
    AppOptions, assert_close, linear_expected, linear_job, slow_job, spawn_app, spawn_app_with,
    test_models,
};

/// A Redis error that is not an outage (here WRONGTYPE) is a 500 `internal` with a generic
/// message and no Retry-After, not a 503 that clients would retry forever.
#[tokio::test]
async fn a_redis_error_that_is_not_an_outage_is_500_not_503() {
    let app = spawn_app().await;
    let id = JobId::new();
    let mut conn = app.redis.conn().await;
    let _: () = redis::cmd("SET")
        .arg(app.keys().job(id))
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
