//! The everyday job features: idempotent submission, bulk submission and per-job retention.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const DONE: Duration = Duration::from_secs(60);

async fn post_with_key(app: &App, key: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

async fn job_count(app: &App) -> usize {
    let mut conn = app.redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}}}:job:*", app.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

#[tokio::test]
async fn one_idempotency_key_makes_one_job_however_many_submissions_race() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let rows = [[1.0, 2.0, 3.0, 4.0]];
    let body = linear_job(&rows);

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (http, base, body) = (app.http.clone(), app.base.clone(), body.clone());
        set.spawn(async move {
            let r = http
                .post(format!("{base}/jobs"))
                .header("Idempotency-Key", "order-7731")
                .json(&body)
                .send()
                .await
                .unwrap();
            let replayed = r.headers()["idempotent-replayed"].to_str().unwrap() == "true";
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, replayed, body["id"].as_str().unwrap().to_owned())
        });
    }
    let answers = set.join_all().await;
    let ids: std::collections::BTreeSet<&str> = answers.iter().map(|a| a.2.as_str()).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|a| a.0 == 202), "{answers:?}");
    assert_eq!(answers.iter().filter(|a| !a.1).count(), 1, "{answers:?}");
    assert_eq!(job_count(&app).await, 1);
    let id = answers[0].2.clone();
    let record = app.wait_done(&id, DONE).await;
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&rows),
        1e-5,
    );

    // Later: the same answer, with the job's current status.
    let (status, replayed, answer) = post_with_key(&app, "order-7731", &body).await;
    assert_eq!(
        (status, replayed.as_deref()),
        (202, Some("true")),
        "{answer}"
    );
    assert_eq!(answer["id"], id.as_str());
    assert_eq!(answer["status"], "succeeded");
    // With ?wait, the record at once.
    let r = app
        .http
        .post(format!("{}/jobs?wait=5", app.base))
        .header("Idempotency-Key", "order-7731")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["id"], id.as_str());

    // The same key with another body.
    let other = linear_job(&[[9.0, 9.0, 9.0, 9.0]]);
    let (status, _, answer) = post_with_key(&app, "order-7731", &other).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"]["code"], "idempotency_key_reused",
        "{answer}"
    );
    // Another key is another job; no key, a new job each time.
    let (status, replayed, answer) = post_with_key(&app, "order-7732", &body).await;
    assert_eq!(
        (status, replayed.as_deref()),
        (202, Some("false")),
        "{answer}"
    );
    assert_ne!(answer["id"], id.as_str());
    assert_eq!(job_count(&app).await, 2);
    // A bad key.
    for bad in ["", &"k".repeat(256), "with space"] {
        let (status, _, answer) = post_with_key(&app, bad, &body).await;
        assert_eq!(status, 400, "{bad:?}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
    }
    // A refused submission does not take the key.
    let bad_job = json!({"model": "linear", "inputs": [{"name": "x", "shape": [1, 3],
        "datatype": "FP32", "data": [1, 2, 3]}]});
    let (status, _, _) = post_with_key(&app, "order-7733", &bad_job).await;
    assert_eq!(status, 422);
    let (status, replayed, _) = post_with_key(&app, "order-7733", &body).await;
    assert_eq!((status, replayed.as_deref()), (202, Some("false")));
}

#[tokio::test]
async fn a_batch_enqueues_its_valid_jobs_and_answers_each_in_order() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;

    let rows: Vec<[f32; 4]> = (0..6).map(|i| [i as f32, 1.0, 0.0, -1.0]).collect();
    let mut jobs: Vec<Value> = rows.iter().map(|r| linear_job(&[*r])).collect();
    // Item 1 does not fit the model, item 3 names no model, item 4 has a bad parameter.
    jobs[1]["inputs"][0]["shape"] = json!([1, 5]);
    jobs[3] = json!({"model": "nope", "inputs": []});
    jobs[4]["parameters"] = json!({"result_ttl_secs": 0});
    jobs[5]["idempotency_key"] = json!("batch-item-5");
    let (status, answer) = app.post_json("/jobs/batch", &json!({"jobs": jobs})).await;
    assert_eq!(status, 200, "{answer}");
    let items = answer["jobs"].as_array().unwrap();
    assert_eq!(items.len(), 6, "{answer}");
    let codes: Vec<Option<&str>> = items.iter().map(|i| i["error"]["code"].as_str()).collect();
    assert_eq!(
        codes,
        [
            None,
            Some("shape_mismatch"),
            None,
            Some("unknown_model"),
            Some("invalid_parameter"),
            None
        ],
        "{answer}"
    );
    for i in [0, 2, 5] {
        let item = &items[i];
        assert_eq!(item["status"], "queued", "{item}");
        let id = item["id"].as_str().unwrap();
        assert_eq!(item["status_url"], format!("/status/{id}"));
        let record = app.wait_done(id, DONE).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_close(
            &record["result"]["outputs"][0]["data"],
            &linear_expected(&[rows[i]]),
            1e-5,
        );
    }
    assert_eq!(job_count(&app).await, 3);

    // The idempotency key of an item replays on a second batch.
    let (_, again) = app
        .post_json(
            "/jobs/batch",
            &json!({"jobs": [jobs[5].clone(), jobs[5].clone()]}),
        )
        .await;
    for item in again["jobs"].as_array().unwrap() {
        assert_eq!(item["id"], items[5]["id"], "{again}");
        assert_eq!(item["idempotent_replayed"], true, "{again}");
    }

    // Bad batches.
    let (status, body) = app.post_json("/jobs/batch", &json!({"jobs": []})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let many: Vec<Value> = (0..1001).map(|_| linear_job(&[[0.0; 4]])).collect();
    let (status, body) = app.post_json("/jobs/batch", &json!({"jobs": many})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = app.post_json("/jobs/batch", &json!([1, 2])).await;
    assert_eq!(status, 400, "{body}");
    let r = app
        .http
        .post(format!("{}/jobs/batch", app.base))
        .header("content-type", "application/json")
        .body("{\"jobs\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");
}

#[tokio::test]
async fn a_job_keeps_its_record_as_long_as_it_asked() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let mut body = linear_job(&[[1.0; 4]]);
    body["parameters"] = json!({"result_ttl_secs": 2});
    let id = app.submit(&body).await;
    app.wait_done(&id, DONE).await;
    let mut conn = app.redis.conn().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{{{}}}:job:{id}", app.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=2).contains(&ttl), "{ttl}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = app.get(&format!("/status/{id}")).await;
    assert_eq!(status, 404, "{body}");

    // Without it, the server's default (a day).
    let id = app.submit(&linear_job(&[[1.0; 4]])).await;
    app.wait_done(&id, DONE).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{{{}}}:job:{id}", app.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 86_000, "{ttl}");

    for bad in [json!(0), json!(31_536_001), json!(-1), json!("x")] {
        let mut body = linear_job(&[[1.0; 4]]);
        body["parameters"] = json!({"result_ttl_secs": bad});
        let (status, answer) = app.post_json("/jobs", &body).await;
        assert!(status == 422 || status == 400, "{bad}: {status} {answer}");
        if status == 422 {
            assert_eq!(answer["error"]["code"], "invalid_parameter", "{answer}");
        }
    }
}
