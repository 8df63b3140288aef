//! The dashboard in a real headless browser against an API that requires keys: it asks for a
//! key and shows no figures until it has one that may see them, and says when a key lacks the
//! `admin` scope; with an admin key it shows the speech pipeline's queue while its jobs run and
//! wait, and saves a screenshot of that. The browser side is `tests/dashboard/check_key_gate.py`.

use serde_json::{Value, json};

use crate::support::audio::{fixture, multipart, speech_worker};
use crate::support::browser::{run_check, screenshot_path};
use crate::support::*;

const ADMIN: &str = "bootstrap-admin-key-for-the-dashboard-0123456789";

#[tokio::test]
async fn the_dashboard_asks_for_a_key_and_shows_no_figures_without_one() {
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
    let screenshot = screenshot_path("dashboard-pipelines.png");
    let text = run_check(
        "check_key_gate.py",
        &[
            &app.base,
            &worker.id,
            &read_key,
            ADMIN,
            screenshot.to_str().unwrap(),
        ],
    )
    .await;
    assert!(text.contains("key gate ok"), "{text}");
}
