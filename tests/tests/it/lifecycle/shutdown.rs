//! A worker stopped with SIGTERM finishes what it started and hands back the rest; past its
//! grace period it hands back what is running too.

use std::time::Duration;

use serde_json::json;

use crate::support::{eventually, slow_job, spawn_app, test_models};

#[tokio::test]
async fn sigterm_finishes_started_jobs_and_hands_back_the_rest() {
    let app = spawn_app().await;
    let mut w1 = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;

    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(app.submit(&slow_job(i as f32)).await);
        }
        ids
    };
    // Wait until the worker's two threads are each running one job.
    let running = eventually(Duration::from_secs(60), "two jobs run", async || {
        let mut running = Vec::new();
        for id in &ids {
            if app.get(&format!("/status/{id}")).await.1["status"] == "running" {
                running.push(id.clone());
            }
        }
        if running.len() == 2 {
            Ok(running)
        } else {
            Err(format!("running: {running:?}"))
        }
    })
    .await;

    w1.signal("TERM");
    assert_eq!(
        w1.wait_exit(Duration::from_secs(30)),
        Some(0),
        "worker must exit 0 after draining"
    );

    // What it had started, it finished; everything else is queued again, untouched.
    for (i, id) in ids.iter().enumerate() {
        let (_, record) = app.get(&format!("/status/{id}")).await;
        if running.contains(id) {
            assert_eq!(record["status"], "succeeded", "{record}");
            assert_eq!(
                record["result"]["outputs"][0]["data"],
                json!([i as f64 + 1.0])
            );
            assert_eq!(app.job_worker(id).await.as_deref(), Some(w1.id.as_str()));
        } else {
            assert_eq!(record["status"], "queued", "{record}");
            assert_eq!(record["attempts"], 0, "{record}");
        }
    }

    let w2 = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    for (i, id) in ids.iter().enumerate() {
        let record = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(record["attempts"], 1, "{record}");
        assert_eq!(
            record["result"]["outputs"][0]["data"],
            json!([i as f64 + 1.0])
        );
        if !running.contains(id) {
            assert_eq!(app.job_worker(id).await.as_deref(), Some(w2.id.as_str()));
        }
    }
}

#[tokio::test]
async fn sigterm_past_the_grace_period_hands_running_jobs_back() {
    let app = spawn_app().await;
    // One inference thread: while the job runs the worker waits for a free thread (which a
    // stop interrupts), not in a blocking read (which ends only after READ_BLOCK), so SIGTERM
    // reaches the drain at once however fast the machine runs the job.
    let env = [
        ("INFERQ_MODELS", "slow"),
        ("INFERQ_SHUTDOWN_GRACE_SECS", "0"),
        ("INFERQ_THREADS", "1"),
    ];
    let mut w1 = app.worker(&test_models(), &env);
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(7.0)).await;
    app.wait_status(&id, "running", Duration::from_secs(30))
        .await;

    w1.signal("TERM");
    assert_eq!(w1.wait_exit(Duration::from_secs(30)), Some(0));
    let (_, record) = app.get(&format!("/status/{id}")).await;
    assert_eq!(
        record["status"], "queued",
        "handed back, not lost: {record}"
    );
    assert_eq!(
        record["attempts"], 1,
        "the interrupted attempt counts: {record}"
    );

    let _w2 = app.worker(&test_models(), &env);
    let record = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 2);
    assert_eq!(record["result"]["outputs"][0]["data"], json!([8.0]));
}
