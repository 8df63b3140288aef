//! Webhooks: signed Standard Webhooks messages, retried with the same id until a 2xx, shown on
//! the job record, and kept in Redis across a restart of every inferq process.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::servers::{Receiver, SECRET};
use crate::support::{
    App, AppOptions, Worker, assert_close, eventually, linear_expected, linear_job, spawn_app_with,
    test_models,
};

const DONE: Duration = Duration::from_secs(60);

fn allow_loopback(c: &mut inferq_api::Config) {
    c.fetch_allow = "127.0.0.1".parse().unwrap();
}

async fn app() -> App {
    spawn_app_with(AppOptions {
        tweak: Some(allow_loopback),
        ..AppOptions::default()
    })
    .await
}

fn worker_env(backoff_ms: &str) -> Vec<(&'static str, String)> {
    vec![
        ("INFERQ_FETCH_ALLOW", "127.0.0.1".into()),
        ("INFERQ_WEBHOOK_SECRET", SECRET.into()),
        ("INFERQ_WEBHOOK_BACKOFF_MS", backoff_ms.into()),
    ]
}

fn start_worker(app: &App, env: &[(&'static str, String)]) -> Worker {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.worker(&test_models(), &env)
}

fn with_webhook(mut job: Value, webhook: Value) -> Value {
    job["webhook"] = webhook;
    job
}

/// Polls until the record's `webhook.state` is `state`.
async fn wait_webhook(app: &App, id: &str, state: &str) -> Value {
    let what = format!("the webhook of {id} becomes {state}");
    eventually(DONE, what, async || {
        let (_, record) = app.get(&format!("/status/{id}")).await;
        if record["webhook"]["state"] == state {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await
}

#[tokio::test]
async fn a_signed_message_is_retried_with_the_same_id_until_delivered() {
    let receiver = Receiver::start(2).await;
    let app = app().await;
    let _w = start_worker(&app, &worker_env("200"));
    app.wait_models(&["linear"]).await;

    let rows = [[1.0, 2.0, 3.0, 4.0]];
    let id = app
        .submit(&with_webhook(
            linear_job(&rows),
            json!({"url": receiver.url}),
        ))
        .await;
    let (_, queued) = app.get(&format!("/status/{id}")).await;
    assert_eq!(queued["webhook"]["state"], "pending", "{queued}");

    let seen = receiver.wait_for(3, DONE).await;
    let record = wait_webhook(&app, &id, "delivered").await;
    assert_eq!(
        seen.iter().map(|m| m.answered).collect::<Vec<_>>(),
        [500, 500, 204]
    );
    // One message: the same id on every attempt, and only the final event by default.
    assert!(seen.iter().all(|m| m.id == seen[0].id), "{seen:?}");
    assert!(seen[0].id.starts_with("msg_"), "{}", seen[0].id);
    for m in &seen {
        assert_eq!(m.body["type"], "job.succeeded");
        assert_eq!(m.body["data"]["id"], id);
        assert_eq!(m.body["data"]["status"], "succeeded");
        assert_close(
            &m.body["data"]["result"]["outputs"][0]["data"],
            &linear_expected(&rows),
            1e-5,
        );
        assert!(m.body["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // Retries send the same body; only the signature's timestamp moves.
    assert_eq!(seen[0].body, seen[2].body);
    assert!(seen[2].timestamp >= seen[0].timestamp);
    assert_eq!(record["webhook"]["attempts"], 3, "{record}");
    assert_eq!(record["webhook"]["last_status"], 204, "{record}");
    assert!(record["webhook"]["last_error"].is_null(), "{record}");
    assert_eq!(record["status"], "succeeded");
}

/// Messages to one receiver go over a kept-alive connection: one after another, failed
/// attempts and retries included, they share one connection instead of opening one each.
#[tokio::test]
async fn messages_to_one_receiver_share_a_kept_alive_connection() {
    let receiver = Receiver::start(1).await;
    let app = app().await;
    let _w = start_worker(&app, &worker_env("200"));
    app.wait_models(&["linear"]).await;

    for n in 0..6u8 {
        let job = with_webhook(
            linear_job(&[[f32::from(n); 4]]),
            json!({"url": receiver.url}),
        );
        let id = app.submit(&job).await;
        wait_webhook(&app, &id, "delivered").await;
    }
    let seen = receiver.seen();
    assert_eq!(
        seen.iter().map(|m| m.answered).collect::<Vec<_>>(),
        [500, 204, 204, 204, 204, 204, 204]
    );
    let peers: std::collections::HashSet<_> = seen.iter().map(|m| m.peer).collect();
    assert_eq!(
        peers.len(),
        1,
        "one connection for every message: {peers:?}"
    );
}

#[tokio::test]
async fn chosen_events_and_cancellations_are_delivered() {
    let receiver = Receiver::start(0).await;
    let app = app().await;
    let _w = start_worker(&app, &worker_env("200"));
    app.wait_models(&["linear"]).await;

    let events = json!({"url": receiver.url, "events": ["started", "succeeded"]});
    let ran = app
        .submit(&with_webhook(linear_job(&[[0.0; 4]]), events))
        .await;
    let mut later = with_webhook(linear_job(&[[0.0; 4]]), json!({"url": receiver.url}));
    later["parameters"] = json!({"delay_ms": 600_000});
    let (status, reply) = app.post_json("/jobs", &later).await;
    assert_eq!(status, 202, "{reply}");
    let cancelled = reply["id"].as_str().unwrap().to_owned();
    let (status, _) = app.delete(&format!("/jobs/{cancelled}")).await;
    assert_eq!(status, 200);
    // A group's member may have its own webhook.
    let member = with_webhook(linear_job(&[[1.0; 4]]), json!({"url": receiver.url}));
    let (status, group) = app
        .post_json(
            "/groups",
            &json!({"jobs": [member, linear_job(&[[2.0; 4]])]}),
        )
        .await;
    assert_eq!(status, 202, "{group}");
    let in_group = group["jobs"][0].as_str().unwrap().to_owned();
    // A job whose events never happen has nothing pending once it is final.
    let unheard = app
        .submit(&with_webhook(
            linear_job(&[[0.0; 4]]),
            json!({"url": receiver.url, "events": ["failed"]}),
        ))
        .await;
    let done = app.wait_done(&unheard, DONE).await;
    assert_eq!(done["status"], "succeeded");
    assert!(done["webhook"].is_null(), "{done}");

    let seen = receiver.wait_for(4, DONE).await;
    let of = |job: &str| -> Vec<String> {
        seen.iter()
            .filter(|m| m.body["data"]["id"] == job)
            .map(|m| m.body["type"].as_str().unwrap().to_owned())
            .collect()
    };
    // Messages are independent (each is delivered and retried on its own): any order.
    let mut ran_events = of(&ran);
    ran_events.sort();
    assert_eq!(ran_events, ["job.started", "job.succeeded"]);
    assert_eq!(of(&cancelled), ["job.cancelled"]);
    assert_eq!(of(&in_group), ["job.succeeded"]);
    let ids: std::collections::HashSet<_> = seen.iter().map(|m| &m.id).collect();
    assert_eq!(ids.len(), 4, "one id per message");
    wait_webhook(&app, &cancelled, "delivered").await;
    wait_webhook(&app, &in_group, "delivered").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.seen().len(),
        4,
        "nothing is sent twice once delivered"
    );
}

#[tokio::test]
async fn webhook_urls_are_checked_at_submission() {
    let app = app().await;
    let _w = start_worker(&app, &worker_env("200"));
    app.wait_models(&["linear"]).await;
    for (webhook, code) in [
        (json!({"url": "http://10.0.0.1/hook"}), "url_not_allowed"),
        (json!({"url": "http://localhost:1/hook"}), "url_not_allowed"),
        (json!({"url": "ftp://example.com/hook"}), "invalid_url"),
        (
            json!({"url": "http://127.0.0.1:1/hook", "events": []}),
            "invalid_parameter",
        ),
    ] {
        let (status, body) = app
            .post_json(
                "/jobs",
                &with_webhook(linear_job(&[[0.0; 4]]), webhook.clone()),
            )
            .await;
        assert_eq!(status, 422, "{webhook}: {body}");
        assert_eq!(body["error"]["code"], code, "{webhook}: {body}");
    }
    let (status, body) = app
        .post_json(
            "/jobs",
            &with_webhook(
                linear_job(&[[0.0; 4]]),
                json!({"url": "http://127.0.0.1:1/h", "events": ["finished"]}),
            ),
        )
        .await;
    assert!((400..500).contains(&status), "{body}");
}

#[tokio::test]
async fn a_delivery_waiting_for_its_retry_survives_a_restart_of_every_process() {
    let receiver = Receiver::start(1).await;
    let mut app = app().await;
    // The first retry waits 3 s: time to stop everything while it waits.
    let env = worker_env("3000");
    let mut w = start_worker(&app, &env);
    app.wait_models(&["linear"]).await;
    let id = app
        .submit(&with_webhook(
            linear_job(&[[1.0; 4]]),
            json!({"url": receiver.url}),
        ))
        .await;
    let first = receiver.wait_for(1, DONE).await;
    assert_eq!(first[0].answered, 500);

    // Every inferq process goes: the API, and the worker without a chance to clean up.
    assert!(app.stop_api(Duration::from_secs(10)).await);
    w.signal("KILL");
    w.wait_exit(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        receiver.seen().len(),
        1,
        "nothing runs while every process is down"
    );

    let _w = start_worker(&app, &env);
    let seen = receiver.wait_for(2, DONE).await;
    assert_eq!(seen[1].id, first[0].id, "the same message, retried");
    assert_eq!(seen[1].answered, 204);
    assert_eq!(seen[1].body["data"]["id"], id);

    // A new API reads the outcome from Redis.
    let api = app.another_api(allow_loopback).await;
    let record = eventually(DONE, "the new API shows the delivery", async || {
        let record: Value = app
            .http
            .get(format!("{api}/status/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if record["webhook"]["state"] == "delivered" {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await;
    assert_eq!(record["webhook"]["attempts"], 2, "{record}");
}
