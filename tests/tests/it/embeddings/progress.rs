//! A running embedding job: progress counts texts and ends at the total, cancelling stops
//! it, and a worker killed mid-job loses nothing (another redoes it, every vector there).

use std::time::Duration;

use serde_json::json;

use crate::speech::wait_progress;
use crate::support::audio::upload_exists;
use crate::support::texts::{
    DIMENSIONS, dot, embedding_worker, max_abs_diff, submit_texts, vectors,
};
use crate::support::{eventually, eventually_every, spawn_app};

/// Medium texts (about 40 tokens each), so a job of a few hundred runs for a while on one
/// engine thread.
fn medium_texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| format!("document {k} {}", "queue worker lease vector ".repeat(9)))
        .collect()
}

const ONE_THREAD: [(&str, &str); 2] = [
    ("INFERQ_EMBEDDING_THREADS", "1"),
    ("INFERQ_EMBEDDING_TOKEN_BUDGET", "2048"),
];

#[tokio::test]
async fn progress_counts_texts_and_ends_at_the_total() {
    let app = spawn_app().await;
    let _w = embedding_worker(&app, &ONE_THREAD);
    let texts = medium_texts(300);
    let id = submit_texts(&app, &texts, json!({"encoding_format": "base64"})).await;
    let mut seen: Vec<f64> = Vec::new();
    let last = eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(240),
        "the job finishes",
        async || {
            let (_, rec) = app.get(&format!("/status/{id}")).await;
            let done = rec["progress"]["done"].as_f64().unwrap();
            assert!(done <= 300.0, "{rec}");
            // `total` is written with the first progress update.
            if rec["status"] == "running" && !rec["progress"]["total"].is_null() {
                assert_eq!(rec["progress"]["total"], 300.0, "{rec}");
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
    let mut distinct = seen.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "progress was not reported while running: {seen:?}"
    );
    assert_eq!(last["progress"], json!({"done": 300.0, "total": 300.0}));
    assert_eq!(vectors(&last["result"]).len(), 300);
    assert!(
        !upload_exists(&app, &id).await,
        "the upload outlived its job"
    );
}

#[tokio::test]
async fn cancelling_stops_a_running_embedding_job() {
    let app = spawn_app().await;
    let w = embedding_worker(&app, &[ONE_THREAD[0], ONE_THREAD[1], ("RUST_LOG", "info")]);
    let id = submit_texts(&app, &medium_texts(3000), json!({})).await;
    wait_progress(&app, &id, 10.0).await;
    let (status, rec) = app.delete(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["status"], "cancelled");
    assert!(
        !upload_exists(&app, &id).await,
        "cancelling keeps the upload"
    );
    eventually(Duration::from_secs(10), "the worker stops", async || {
        let log = w.log_text();
        if log.contains("embedding job cancelled or taken over; stopping") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    // The worker is free again, its engine empty of the cancelled texts: the next job runs.
    let id = submit_texts(&app, &["after the cancel".to_string()], json!({})).await;
    let done = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, rec) = app
        .get(&format!("/status/{}", rec["id"].as_str().unwrap()))
        .await;
    assert_eq!(rec["status"], "cancelled", "{rec}");
}

/// A worker killed (SIGKILL) mid-job loses nothing: after the lease another worker redoes
/// the job from the start and every text gets its vector, in order.
#[tokio::test]
async fn a_killed_workers_job_is_redone_with_every_vector() {
    let app = spawn_app().await;
    let mut a = embedding_worker(&app, &ONE_THREAD);
    let texts = medium_texts(600);
    let id = submit_texts(&app, &texts, json!({"encoding_format": "base64"})).await;
    let rec = wait_progress(&app, &id, 30.0).await;
    assert_eq!(rec["attempts"], 1);
    assert_eq!(app.job_worker(&id).await.as_deref(), Some(a.id.as_str()));
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5));
    let b = embedding_worker(&app, &[]);
    let done = app.wait_done(&id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(app.job_worker(&id).await.as_deref(), Some(b.id.as_str()));
    assert_eq!(done["progress"], json!({"done": 600.0, "total": 600.0}));
    let got = vectors(&done["result"]);
    assert_eq!(got.len(), 600);
    for v in &got {
        assert_eq!(v.len(), DIMENSIONS);
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
    }
    // In order: a few texts embedded on their own give the same vectors.
    for k in [0, 377, 599] {
        let one = submit_texts(&app, &texts[k..=k], json!({})).await;
        let one = app.wait_done(&one, Duration::from_secs(60)).await;
        assert!(
            max_abs_diff(&vectors(&one["result"])[0], &got[k]) < 1e-5,
            "text {k}"
        );
    }
    assert!(!upload_exists(&app, &id).await);
}
