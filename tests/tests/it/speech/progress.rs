//! A running pipeline job: its progress (monotonic, ending at the total), cancelled while it
//! runs, redone by another worker when its worker is killed.

use std::time::Duration;

use serde_json::json;

use super::wait_progress;
use crate::support::audio::{fixture, reference, speech_worker, submit_audio, upload_exists};
use crate::support::{eventually, eventually_every, spawn_app};

/// Progress of a 10-minute recording: written while it runs, never going back, ending at
/// the total.
#[tokio::test]
async fn progress_is_monotonic_and_ends_at_the_total() {
    let app = spawn_app().await;
    let _w = speech_worker(&app, &[("INFERQ_SPEECH_THREADS", "1")]);
    let id = submit_audio(&app, &fixture("long.flac"), None).await;
    let mut seen: Vec<f64> = Vec::new();
    // Every progress value on the way, until the job ends.
    let last = eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(180),
        "the job finishes",
        async || {
            let (_, rec) = app.get(&format!("/status/{id}")).await;
            let done = rec["progress"]["done"].as_f64().unwrap();
            if rec["status"] == "running" {
                if let Some(total) = rec["progress"]["total"].as_f64() {
                    assert_eq!(total, 600.0, "{rec}");
                }
                assert!(done <= 600.0);
            }
            seen.push(done);
            if rec["status"] != "running" && rec["status"] != "queued" {
                Ok(rec)
            } else {
                Err(rec)
            }
        },
    )
    .await;
    assert_eq!(last["status"], "succeeded", "{last}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {seen:?}"
    );
    let distinct = {
        let mut d = seen.clone();
        d.dedup();
        d.len()
    };
    assert!(
        distinct >= 3,
        "progress was not reported while running: {seen:?}"
    );
    assert_eq!(last["progress"], json!({"done": 600.0, "total": 600.0}));
    assert_eq!(last["result"]["duration"], 600.0);
    assert!(!upload_exists(&app, &id).await);
}

#[tokio::test]
async fn cancelling_stops_a_running_pipeline() {
    let app = spawn_app().await;
    let w = speech_worker(
        &app,
        &[("INFERQ_SPEECH_THREADS", "1"), ("RUST_LOG", "info")],
    );
    let id = submit_audio(&app, &fixture("long.flac"), None).await;
    wait_progress(&app, &id, 1.0).await;
    let (status, rec) = app.delete(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["status"], "cancelled");
    assert!(
        !upload_exists(&app, &id).await,
        "cancelling keeps the upload"
    );
    eventually(Duration::from_secs(10), "the worker stops", async || {
        let log = w.log_text();
        if log.contains("cancelled or taken over; stopping") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    let (_, rec) = app.get(&format!("/status/{id}")).await;
    assert_eq!(rec["status"], "cancelled", "{rec}");
    // The worker is free again: the next recording runs.
    let id = submit_audio(&app, &fixture("speech.wav"), None).await;
    let done = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

/// A worker killed mid-file loses nothing: another takes the job over after the lease and
/// redoes the file from the start (progress starts over); the result is the same.
#[tokio::test]
async fn a_killed_workers_recording_is_redone_by_another() {
    let app = spawn_app().await;
    let env = [("INFERQ_SPEECH_THREADS", "1")];
    let mut a = speech_worker(&app, &env);
    let id = submit_audio(&app, &fixture("long.flac"), None).await;
    let rec = wait_progress(&app, &id, 30.0).await;
    assert_eq!(rec["attempts"], 1);
    assert_eq!(app.job_worker(&id).await.as_deref(), Some(a.id.as_str()));
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5));
    let b = speech_worker(&app, &env);
    let done = app.wait_done(&id, Duration::from_secs(240)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(app.job_worker(&id).await.as_deref(), Some(b.id.as_str()));
    assert_eq!(done["progress"], json!({"done": 600.0, "total": 600.0}));
    // The recording repeats the speech fixture: its first segments are the fixture's.
    let first = &done["result"]["segments"][0];
    assert_eq!(first, &reference("speech.ref.json")["segments"][0]);
    assert!(!upload_exists(&app, &id).await);
}
