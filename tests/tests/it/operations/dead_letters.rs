//! The dead letters: listed newest first, retried under the same id, deleted.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{App, eventually_every, slow_job, spawn_app, test_models};

#[tokio::test]
async fn a_dead_letter_is_listed_retried_and_deleted() {
    let app = spawn_app().await;
    let env = [
        ("INFERQ_MODELS", "slow"),
        ("INFERQ_LEASE_MS", "500"),
        ("INFERQ_MAX_ATTEMPTS", "1"),
    ];
    let mut first = app.worker(&test_models(), &env);
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(41.0)).await;
    app.wait_status(&id, "running", Duration::from_secs(30))
        .await;
    // The worker dies mid-job; with one attempt allowed, the next worker dead-letters the job.
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let _second = app.worker(&test_models(), &env);
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(record["error"]["code"], "max_attempts_exceeded", "{record}");

    // An entry no worker can read becomes a dead letter without a job.
    let mut conn = app.redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(app.keys().stream("slow"))
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (_, page) = poll_dead(&app, "/dead", |b| {
        b["dead_letters"].as_array().unwrap().len() == 2
    })
    .await;

    // Newest first, one per page.
    let (status, page1) = app.get("/dead?limit=1").await;
    assert_eq!(status, 200, "{page1}");
    let malformed = &page1["dead_letters"][0];
    assert_eq!(malformed["id"], Value::Null, "{page1}");
    assert_eq!(malformed["error"]["code"], "malformed_entry", "{page1}");
    assert_eq!(malformed["model"], "slow", "{page1}");
    assert_eq!(malformed["retryable"], false, "{page1}");
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = app.get(&format!("/dead?limit=1&cursor={cursor}")).await;
    let dead = &page2["dead_letters"][0];
    assert_eq!(dead["id"], id.as_str(), "{page2}");
    assert_eq!(dead["model"], "slow", "{page2}");
    assert_eq!(dead["error"]["code"], "max_attempts_exceeded", "{page2}");
    assert_eq!(dead["attempts"], 1, "{page2}");
    assert_eq!(dead["retryable"], true, "{page2}");
    assert!(
        dead["failed_at"].as_str().unwrap().ends_with('Z'),
        "{page2}"
    );
    assert_eq!(page2["next_cursor"], Value::Null, "{page2}");
    assert_eq!(page["dead_letters"][1]["id"], id.as_str(), "{page}");

    // The queue overview counts them and lists the failure.
    let (_, queues) = app.get("/queues").await;
    assert_eq!(queues["dead_letters"], 2, "{queues}");
    let failures = queues["recent_failures"].as_array().unwrap();
    assert!(
        failures
            .iter()
            .any(|f| f["id"] == id.as_str() && f["code"] == "max_attempts_exceeded"),
        "{queues}"
    );

    // Bad requests.
    for bad in [
        "/dead?limit=0",
        "/dead?limit=1001",
        "/dead?cursor=abc",
        "/dead?limit=x",
    ] {
        let (status, body) = app.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{bad}: {body}");
    }
    let dead_id = malformed["dead_id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post_json(&format!("/dead/{dead_id}/retry"), &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_retryable")),
        "{body}"
    );
    let (status, body) = app.post_json("/dead/nonsense/retry", &json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("dead_letter_not_found")),
        "{body}"
    );

    // Retry: same id, a new series of attempts, and it succeeds this time.
    let (status, body) = app
        .post_json(&format!("/dead/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"], id.as_str(), "{body}");
    assert_eq!(body["status_url"], format!("/status/{id}"), "{body}");
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
    assert_eq!(record["error"], Value::Null, "{record}");
    assert_eq!(
        record["result"]["outputs"][0]["data"],
        json!([42.0]),
        "{record}"
    );
    let (status, _) = app
        .post_json(&format!("/dead/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 404);

    // Delete.
    let (status, _) = app.delete(&format!("/dead/{dead_id}")).await;
    assert_eq!(status, 204);
    let (status, body) = app.delete(&format!("/dead/{dead_id}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("dead_letter_not_found")),
        "{body}"
    );
    let (_, page) = app.get("/dead").await;
    assert_eq!(page, json!({"dead_letters": [], "next_cursor": null}));
}

async fn poll_dead(app: &App, path: &str, ok: impl Fn(&Value) -> bool) -> (u16, Value) {
    let what = format!("{path} matches");
    eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(20),
        what,
        async || {
            let (status, body) = app.get(path).await;
            if status == 200 && ok(&body) {
                Ok((status, body))
            } else {
                Err(body)
            }
        },
    )
    .await
}
