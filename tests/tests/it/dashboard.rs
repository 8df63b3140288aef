//! `GET /dashboard` in a real headless browser (Debian's Chromium through Playwright, in
//! .venv-test): the page loads with no console error and no failed request, shows the live
//! worker and its model, reflects a batch of jobs, its Retry button re-runs a dead letter and
//! its Discard button deletes an unreadable one.
//! The browser side is `tests/dashboard/check_dashboard.py`; it saves a screenshot.

use std::io::Write;
use std::time::Duration;

use crate::support::browser::{run_check, screenshot_path};
use crate::support::{eventually, slow_job, spawn_app, test_models};

#[tokio::test]
async fn the_dashboard_shows_the_system_and_retries_a_dead_letter() {
    let app = spawn_app().await;
    // One attempt only, and a short lease: a job whose worker dies is dead-lettered as soon as
    // another worker takes it over.
    let env = |models| {
        [
            ("INFERQ_MODELS", models),
            ("INFERQ_LEASE_MS", "500"),
            ("INFERQ_MAX_ATTEMPTS", "1"),
        ]
    };
    let doomed = app.worker(&test_models(), &env("slow"));
    app.wait_models(&["slow"]).await;
    let dead_id = app.submit(&slow_job(41.0)).await;
    app.wait_status(&dead_id, "running", Duration::from_secs(30))
        .await;
    doomed.signal("KILL");
    drop(doomed);
    let worker = app.worker(&test_models(), &env("linear,slow"));
    app.wait_models(&["linear", "slow"]).await;
    let record = app.wait_done(&dead_id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "max_attempts_exceeded", "{record}");
    // And a queue entry no worker can read: set aside as a dead letter without a job.
    let mut conn = app.redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(app.keys().stream("linear"))
        .arg("*")
        .arg("id")
        .arg("not-a-job-id")
        .query_async(&mut conn)
        .await
        .unwrap();
    let what = "the unreadable entry is set aside";
    eventually(Duration::from_secs(30), what, async || {
        let dead: u64 = redis::cmd("XLEN")
            .arg(app.keys().dead_letter())
            .query_async(&mut conn)
            .await
            .unwrap();
        if dead == 2 {
            Ok(())
        } else {
            Err(format!("{dead} dead letters"))
        }
    })
    .await;

    let screenshot = screenshot_path("dashboard.png");
    let text = run_check(
        "check_dashboard.py",
        &[
            &app.base,
            &worker.id,
            &dead_id,
            screenshot.to_str().unwrap(),
        ],
    )
    .await;
    assert!(text.contains("dashboard ok"), "{text}");
    // Written past the test harness's capture, so the path shows in every run.
    let _ = writeln!(
        std::io::stderr(),
        "dashboard screenshot: {}",
        screenshot.display()
    );

    // The retried job ran again and succeeded: slow computes x + 1.
    let record = app.wait_done(&dead_id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(
        record["result"]["outputs"][0]["data"],
        serde_json::json!([42.0])
    );
}
