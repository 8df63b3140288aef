//! `GET /jobs` (newest first, filters, stable pages) and a queued job's place in the queue.

use std::time::Duration;

use serde_json::{Value, json};

use super::{DONE, ids_of};
use crate::support::{App, eventually, linear_job, slow_job, spawn_app, test_models};

async fn submit_spaced(app: &App, body: &Value) -> String {
    // Creation times are milliseconds: a gap makes "newest first" one order.
    tokio::time::sleep(Duration::from_millis(3)).await;
    app.submit(body).await
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters_and_stable_pages() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear,slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["linear", "slow"]).await;
    let mut linear = Vec::new();
    for i in 0..7 {
        linear.push(submit_spaced(&app, &linear_job(&[[i as f32; 4]])).await);
    }
    for id in &linear {
        app.wait_done(id, DONE).await;
    }
    let mut slow = Vec::new();
    for i in 0..3 {
        slow.push(submit_spaced(&app, &slow_job(i as f32)).await);
    }
    let (status, _) = app.delete(&format!("/jobs/{}", slow[2])).await;
    assert_eq!(status, 200);
    let all: Vec<String> = linear.iter().chain(&slow).rev().cloned().collect();

    // Page by page, newest first; jobs submitted meanwhile do not shift the pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs?limit=3&cursor={c}"),
            None => "/jobs?limit=3".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert!(page["jobs"].as_array().unwrap().len() <= 3, "{page}");
        for job in page["jobs"].as_array().unwrap() {
            assert_eq!(job["result"], Value::Null, "{job}");
        }
        seen.extend(ids_of(&page));
        if seen.len() == 3 {
            submit_spaced(&app, &linear_job(&[[0.0; 4]])).await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all);

    let (_, page) = app
        .get("/jobs?status=succeeded&model=linear&limit=100")
        .await;
    let mut want: Vec<String> = linear.iter().rev().cloned().collect();
    // The job submitted while paging, once it has run.
    let newest = app.get("/jobs?limit=1").await.1["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_done(&newest, DONE).await;
    let (_, page2) = app
        .get("/jobs?status=succeeded&model=linear&limit=100")
        .await;
    assert_eq!(ids_of(&page), want, "{page}");
    want.insert(0, newest);
    assert_eq!(ids_of(&page2), want, "{page2}");
    assert_eq!(page2["next_cursor"], Value::Null);
    let (_, page) = app.get("/jobs?status=cancelled").await;
    assert_eq!(ids_of(&page), [slow[2].clone()], "{page}");
    assert_eq!(page["jobs"][0]["status"], "cancelled");
    let (_, page) = app.get("/jobs?model=slow").await;
    assert_eq!(
        ids_of(&page),
        slow.iter().rev().cloned().collect::<Vec<_>>(),
        "{page}"
    );
    let (_, page) = app.get("/jobs?model=nothing_here").await;
    assert_eq!(page, json!({"jobs": [], "next_cursor": null}));

    for bad in [
        "/jobs?limit=0",
        "/jobs?limit=1001",
        "/jobs?status=sleeping",
        "/jobs?cursor=12",
        "/jobs?cursor=12-nope",
        "/jobs?model=bad%20name",
    ] {
        let (status, body) = app.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_queued_job_shows_its_place_in_the_queue_and_an_eta() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["slow"]).await;
    let mut ids = Vec::new();
    // Two seconds or more per job on any machine (the slow model alone takes 0.4 s on a fast
    // one), so the later jobs are still queued when the test looks.
    for i in 0..4 {
        let mut job = slow_job(i as f32);
        job["parameters"] = serde_json::json!({"test_hook": "slow_decode"});
        ids.push(app.submit(&job).await);
    }
    app.wait_status(&ids[0], "running", DONE).await;
    for (i, id) in ids.iter().enumerate().skip(1) {
        let (_, record) = app.get(&format!("/status/{id}")).await;
        assert_eq!(record["status"], "queued", "{record}");
        assert_eq!(record["queue_position"], i - 1, "{record}");
        // Nothing of the model finished in the last minute: no estimate yet.
        assert!(record.get("eta_ms").is_none(), "{record}");
    }
    let (_, running) = app.get(&format!("/status/{}", ids[0])).await;
    assert!(running.get("queue_position").is_none(), "{running}");

    // Once a job has finished (within the last whole second), the estimate appears.
    app.wait_done(&ids[0], DONE).await;
    let record = eventually(Duration::from_secs(5), "an estimate appears", async || {
        let (_, record) = app.get(&format!("/status/{}", ids[3])).await;
        if record.get("eta_ms").is_some() || record["status"] != "queued" {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await;
    assert_eq!(record["status"], "queued", "{record}");
    let position = record["queue_position"].as_u64().unwrap();
    assert!(position <= 1, "{record}");
    // One job (two, if the next finished within the same second) in the last minute:
    // (position + 1) jobs at that rate.
    let eta = record["eta_ms"].as_u64().unwrap();
    assert!(
        eta == (position + 1) * 60_000 || eta == (position + 1) * 30_000,
        "{record}"
    );
}
