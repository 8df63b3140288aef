//! Many jobs at once: `POST /jobs/batch` item by item, and concurrent submissions that share
//! Redis calls (group commit).

use serde_json::{Value, json};

use super::{DONE, job_count};
use crate::support::{assert_close, linear_expected, linear_job, spawn_app, test_models};

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
    let (status, body) = app
        .post_json(
            "/jobs/batch",
            &json!({"jobs": [linear_job(&[[0.0; 4]]), 5]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jobs[1]"),
        "{body}"
    );
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

/// Submissions that arrive together share submit calls to Redis (group commit), and each keeps
/// its own job: its own id, record and result.
#[tokio::test]
async fn concurrent_submissions_share_redis_calls_and_keep_their_own_jobs() {
    const JOBS: usize = 96;
    let app = spawn_app().await;
    // The model is known (a worker announced it) but no worker runs during the burst, so every
    // script call Redis sees then is a submission.
    {
        let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
        app.wait_models(&["linear"]).await;
    }
    let mut conn = app.redis.conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..JOBS {
        let (http, base) = (app.http.clone(), app.base.clone());
        let rows = [[i as f32, 1.0, 2.0, 3.0]];
        set.spawn(async move {
            let r = http
                .post(format!("{base}/jobs"))
                .json(&linear_job(&rows))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (
                status,
                rows,
                body["id"].as_str().unwrap_or_default().to_owned(),
            )
        });
    }
    let answers = set.join_all().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let calls = |cmd: &str| -> usize {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|l| l.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(answers.iter().all(|a| a.0 == 202), "{answers:?}");
    let ids: std::collections::BTreeSet<&str> = answers.iter().map(|a| a.2.as_str()).collect();
    assert_eq!(ids.len(), JOBS);
    // Each job: its queue's stream entry and its listing index entry.
    assert_eq!(calls("xadd"), 2 * JOBS, "{info}");
    let scripts = calls("evalsha");
    eprintln!("{JOBS} concurrent submissions took {scripts} script calls");
    assert!(scripts < JOBS, "no two submissions shared a call: {info}");

    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    for (_, rows, id) in &answers {
        let record = app.wait_done(id, DONE).await;
        assert_close(
            &record["result"]["outputs"][0]["data"],
            &linear_expected(rows),
            1e-5,
        );
    }
}
