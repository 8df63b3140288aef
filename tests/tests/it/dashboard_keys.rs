//! The dashboard in a real headless browser against an API that requires keys: it asks for a
//! key and shows no figures until it has one that may see them, and says when a key lacks the
//! `admin` scope; with an admin key it shows the speech pipeline's queue while its jobs run and
//! wait, and saves a screenshot of that. The browser side is `tests/dashboard/check_key_gate.py`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::audio::{fixture, multipart, speech_worker};
use crate::support::*;

const ADMIN: &str = "bootstrap-admin-key-for-the-dashboard-0123456789";

#[tokio::test]
async fn the_dashboard_asks_for_a_key_and_shows_no_figures_without_one() {
    let chromium = std::env::var_os("INFERQ_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(chromium.exists(), "{} is missing", chromium.display());
    let app = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await;
    let worker = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    // One recording at a time, so some wait while one runs.
    let _speech = speech_worker(
        &app,
        &[
            ("INFERQ_SPEECH_THREADS", "1"),
            ("INFERQ_SPEECH_CONCURRENCY", "1"),
        ],
    );
    // A key that may read its tenant's jobs, not every tenant's figures.
    let reply = app
        .http
        .post(format!("{}/keys", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "team-a", "scopes": ["submit", "read"], "name": "reader"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let body: Value = reply.json().await.unwrap();
    let read_key = body["key"].as_str().unwrap().to_owned();
    let client = app.client(ADMIN);
    client.wait_models(&["linear", "silero_vad"]).await;
    let audio = fixture("long.flac");
    let (content_type, body) = multipart(&audio, None);
    for _ in 0..6 {
        let r = app
            .http
            .post(format!("{}/jobs", app.base))
            .bearer_auth(ADMIN)
            .header("content-type", &content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // `target/dashboard-pipelines.png`, beside the binaries the tests run.
    let screenshot = worker_binary()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("dashboard-pipelines.png");

    let run = tokio::process::Command::new(test_venv("python"))
        .arg(repo_root().join("tests/dashboard/check_key_gate.py"))
        .arg(&app.base)
        .arg(&worker.id)
        .arg(&read_key)
        .arg(ADMIN)
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
    assert!(text.contains("key gate ok"), "{text}");
}
