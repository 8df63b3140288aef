//! A pipeline is a queue like a model's wherever an operator looks: `GET /queues`,
//! `GET /scaling`, `/metrics` and `inferq queues` show `pipeline:speech_segments` with its
//! waiting, running and finished jobs and its workers.

use std::time::Duration;

use crate::support::audio::{fixture, speech_worker, submit_audio};
use crate::support::{cli_binary, eventually, spawn_app};

const QUEUE: &str = "pipeline:speech_segments";

#[tokio::test]
async fn pipeline_jobs_show_as_a_queue_to_the_operator() {
    let app = spawn_app().await;
    // One recording at a time, so the others wait while it runs.
    let _w = speech_worker(
        &app,
        &[
            ("INFERQ_SPEECH_THREADS", "1"),
            ("INFERQ_SPEECH_CONCURRENCY", "1"),
        ],
    );
    app.wait_models(&["silero_vad"]).await;
    let audio = fixture("long.flac");
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(submit_audio(&app, &audio, None).await);
    }
    // While they run and wait: one running, the rest waiting, a worker serving the queue.
    let figures = eventually(
        Duration::from_secs(60),
        "the pipeline's queue",
        async || {
            let (_, q) = app.get("/queues").await;
            let f = q["queues"][QUEUE].clone();
            (f["running"] == 1 && f["depth"].as_u64() >= Some(1)).then_some(f)
        },
    )
    .await;
    assert_eq!(figures["workers"], 1, "{figures}");
    assert!(
        figures["oldest_age_seconds"].as_f64().unwrap() >= 0.0,
        "{figures}"
    );
    let (status, scaling) = app.get("/scaling").await;
    assert_eq!(status, 200, "{scaling}");
    let load = scaling["queues"][QUEUE]["load"].as_u64().unwrap();
    assert!((1..=6).contains(&load), "{scaling}");
    assert!(
        scaling["total"]["load"].as_u64().unwrap() >= load,
        "{scaling}"
    );
    assert_eq!(scaling["queues"]["silero_vad"]["load"], 0, "{scaling}");

    let out = tokio::process::Command::new(cli_binary())
        .arg("queues")
        .env("INFERQ_URL", &app.base)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.starts_with(QUEUE))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2], "1", "running: {text}");

    for id in &ids {
        let rec = app.wait_done(id, Duration::from_secs(300)).await;
        assert_eq!(rec["status"], "succeeded", "{rec}");
    }
    // Finished: counted as the queue's throughput (whole seconds only, so once the second of
    // the last one has passed), not the model's.
    let q = eventually(
        Duration::from_secs(10),
        "six finished in the minute",
        async || {
            let (_, q) = app.get("/queues").await;
            (q["queues"][QUEUE]["completed_last_minute"] == 6).then_some(q)
        },
    )
    .await;
    assert_eq!(q["queues"]["silero_vad"]["completed_last_minute"], 0, "{q}");
    let metrics: String = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.contains(&format!("model=\"{QUEUE}\"")) && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no metric of the pipeline's queue:\n{metrics}"));
    assert!(line.starts_with("inferq_"), "{line}");
}
