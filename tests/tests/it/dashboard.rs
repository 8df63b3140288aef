//! `GET /dashboard` in a real headless browser (Debian's Chromium through Playwright, in
//! .venv-test): the page loads with no console error and no failed request, shows the live
//! worker and its model, reflects a batch of jobs, its Retry button re-runs a dead letter and
//! its Discard button deletes an unreadable one.
//! The browser side is `tests/dashboard/check_dashboard.py`; it saves a screenshot.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::{eventually, repo_root, slow_job, spawn_app, test_models, test_venv};

/// Debian's Chromium (scripts/setup.sh installs it); `INFERQ_TEST_CHROMIUM` names another
/// Chromium or Chrome binary.
fn chromium() -> PathBuf {
    std::env::var_os("INFERQ_TEST_CHROMIUM")
        .map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// `target/dashboard.png`, beside the binaries the tests run (this binary is
/// `target/<profile>/deps/it-<hash>`).
fn screenshot_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("dashboard.png")
}

#[tokio::test]
async fn the_dashboard_shows_the_system_and_retries_a_dead_letter() {
    let chromium = chromium();
    assert!(
        chromium.exists(),
        "{} is missing: run scripts/setup.sh (it installs Debian's chromium), or set \
         INFERQ_TEST_CHROMIUM to a Chromium binary",
        chromium.display()
    );
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

    let screenshot = screenshot_path();
    let run = tokio::process::Command::new(test_venv("python"))
        .arg(repo_root().join("tests/dashboard/check_dashboard.py"))
        .arg(&app.base)
        .arg(&worker.id)
        .arg(&dead_id)
        .arg(&screenshot)
        .arg(&chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser check did not finish in 180 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
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
