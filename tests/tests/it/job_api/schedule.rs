//! Scheduled jobs: `delay_ms` and `run_at`, cancelled while waiting, due while no worker runs.

use std::time::Duration;

use serde_json::{Value, json};

use super::{DONE, ids_of};
use crate::support::{App, assert_close, linear_expected, linear_job, spawn_app, test_models};

async fn submit_scheduled(app: &App, body: &Value) -> String {
    let (status, answer) = app.post_json("/jobs", body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("scheduled")),
        "{answer}"
    );
    answer["id"].as_str().unwrap().to_owned()
}

fn ms(rfc3339: &Value) -> u64 {
    inferq_shared::time::parse_rfc3339_ms(rfc3339.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_scheduled_job_waits_for_its_time_and_can_be_cancelled_meanwhile() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let rows = [[3.0, 1.0, 0.0, 2.0]];

    // delay_ms: scheduled, then run within a second of being due.
    let mut body = linear_job(&rows);
    body["parameters"] = json!({"delay_ms": 1500});
    let (status, answer) = app.post_json("/jobs", &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "scheduled", "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    let (_, record) = app.get(&format!("/status/{id}")).await;
    assert_eq!(record["status"], "scheduled", "{record}");
    let due = ms(&record["run_at"]);
    // The API reads the clock for the due time just before Redis writes `created_at`.
    let created = ms(&record["created_at"]);
    assert!((created + 1450..=created + 1500).contains(&due), "{record}");
    let (_, listed) = app.get("/jobs?status=scheduled").await;
    assert_eq!(ids_of(&listed), vec![id.clone()]);
    let record = app.wait_done(&id, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let started = ms(&record["started_at"]);
    assert!(started >= due && started < due + 1000, "{record}");
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&rows),
        1e-5,
    );

    // run_at as epoch milliseconds and as RFC 3339; a time in the past runs at once.
    let soon = inferq_shared::time::now_ms() + 1000;
    let mut body = linear_job(&rows);
    body["parameters"] = json!({"run_at": soon});
    let id = submit_scheduled(&app, &body).await;
    let record = app.wait_done(&id, DONE).await;
    assert!(ms(&record["started_at"]) >= soon, "{record}");
    let mut body = linear_job(&rows);
    body["parameters"] = json!({"run_at": "2020-01-01T00:00:00Z"});
    let (status, answer) = app.post_json("/jobs", &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("queued")),
        "{answer}"
    );

    // Cancelled while scheduled: it never runs.
    let mut body = linear_job(&rows);
    body["parameters"] = json!({"delay_ms": 800});
    let id = submit_scheduled(&app, &body).await;
    let (status, record) = app.delete(&format!("/jobs/{id}")).await;
    assert_eq!(
        (status, record["status"].as_str()),
        (200, Some("cancelled")),
        "{record}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, record) = app.get(&format!("/status/{id}")).await;
    assert_eq!(record["status"], "cancelled", "{record}");
    assert_eq!(record["started_at"], Value::Null, "{record}");

    for bad in [
        json!({"delay_ms": 10, "run_at": 5}),
        json!({"run_at": "tomorrow"}),
        json!({"run_at": -5}),
        json!({"run_at": true}),
    ] {
        let mut body = linear_job(&rows);
        body["parameters"] = bad.clone();
        let (status, answer) = app.post_json("/jobs", &body).await;
        assert!(status == 422 || status == 400, "{bad}: {status} {answer}");
        if status == 422 {
            assert_eq!(answer["error"]["code"], "invalid_parameter", "{answer}");
        }
    }
}

#[tokio::test]
async fn a_scheduled_job_comes_due_while_no_worker_runs() {
    let app = spawn_app().await;
    let mut w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let mut body = linear_job(&[[1.0; 4]]);
    body["parameters"] = json!({"delay_ms": 1000});
    let id = submit_scheduled(&app, &body).await;
    w.signal("KILL");
    w.wait_exit(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (_, record) = app.get(&format!("/status/{id}")).await;
    assert_eq!(record["status"], "scheduled", "{record}");
    // Kept in Redis: the next worker queues it and runs it.
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    let record = app.wait_done(&id, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");
}
