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

async fn submit_spaced(app: &App, body: &Value) -> String {
    // Creation times are milliseconds: a gap makes "newest first" one order.
    tokio::time::sleep(Duration::from_millis(3)).await;
    app.submit(body).await
}

fn ids_of(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
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
async fn expired_jobs_leave_the_listing() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let mut body = linear_job(&[[1.0; 4]]);
    body["parameters"] = json!({"result_ttl_secs": 1});
    let id = app.submit(&body).await;
    app.wait_done(&id, DONE).await;
    let (_, page) = app.get("/jobs").await;
    assert_eq!(ids_of(&page), vec![id.clone()]);
    // The API's sweeper drops it from the index once the record is gone, listed or not.
    let mut conn = app.redis.conn().await;
    let index = format!("{{{}}}:jobs", app.namespace);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(&index)
            .arg(&id)
            .query_async(&mut conn)
            .await
            .unwrap();
        if score.is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still indexed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, page) = app.get("/jobs").await;
    assert_eq!(page, json!({"jobs": [], "next_cursor": null}));
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
    for i in 0..4 {
        ids.push(app.submit(&slow_job(i as f32)).await);
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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let record = loop {
        let (_, record) = app.get(&format!("/status/{}", ids[3])).await;
        if record.get("eta_ms").is_some() || record["status"] != "queued" {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "{record}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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

#[tokio::test]
async fn a_group_fans_one_input_out_and_reports_one_status() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear,slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["linear", "slow"]).await;
    let rows = [[1.0, -2.0, 0.5, 4.0]];
    let shared = linear_job(&rows)["inputs"].clone();
    let before = job_count(&app).await;
    let (status, body) = app
        .post_json(
            "/groups",
            &json!({"inputs": shared, "jobs": [
                {"model": "linear"},
                {"model": "linear", "outputs": [{"name": "y"}]},
                slow_job(3.0),
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let group = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/groups/{group}"));
    let members: Vec<&str> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 3);
    assert_eq!(job_count(&app).await, before + 3);

    let (_, early) = app.get(&format!("/groups/{group}")).await;
    assert!(
        ["queued", "running"].contains(&early["status"].as_str().unwrap()),
        "{early}"
    );
    let (status, done) = app.get(&format!("/groups/{group}?wait=30")).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["counts"],
        json!({"scheduled": 0, "queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0})
    );
    let jobs = done["jobs"].as_array().unwrap();
    for (i, job) in jobs.iter().enumerate() {
        assert_eq!(job["id"], members[i], "{done}");
    }
    for job in &jobs[..2] {
        assert_close(
            &job["result"]["outputs"][0]["data"],
            &linear_expected(&rows),
            1e-5,
        );
    }
    assert_eq!(jobs[2]["result"]["outputs"][0]["data"], json!([4.0]));

    // All or nothing: one member that does not fit, no job at all.
    let before = job_count(&app).await;
    let mut bad = linear_job(&[[0.0; 4]]);
    bad["inputs"][0]["shape"] = json!([1, 5]);
    let (status, body) = app
        .post_json("/groups", &json!({"jobs": [linear_job(&rows), bad]}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "shape_mismatch", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("jobs[1]: "),
        "{body}"
    );
    let (status, body) = app
        .post_json("/groups", &json!({"jobs": [{"model": "linear"}]}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = app.post_json("/groups", &json!({"jobs": []})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert_eq!(job_count(&app).await, before);

    // Cancelling a group cancels the members still pending: one running, one queued.
    let (_, body) = app
        .post_json("/groups", &json!({"jobs": [slow_job(1.0), slow_job(2.0)]}))
        .await;
    let group = body["id"].as_str().unwrap().to_owned();
    app.wait_status(body["jobs"][0].as_str().unwrap(), "running", DONE)
        .await;
    let (status, cancelled) = app.delete(&format!("/groups/{group}")).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["counts"]["cancelled"], 2, "{cancelled}");

    let unknown = uuid::Uuid::new_v4();
    let (status, body) = app.get(&format!("/groups/{unknown}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("group_not_found"))
    );
    let (status, body) = app.delete(&format!("/groups/{unknown}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("group_not_found"))
    );
    let (status, _) = app.get("/groups/not-a-uuid").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_result_cache_answers_identical_jobs_until_the_model_file_changes() {
    let app = spawn_app().await;
    // A copy of the linear model that the test can change.
    let dir = app.redis.dir.join("models");
    std::fs::create_dir_all(dir.join("linear")).unwrap();
    let onnx = dir.join("linear/model.onnx");
    std::fs::copy(test_models().join("linear/model.onnx"), &onnx).unwrap();
    let mut w = app.worker(&dir, &[]);
    app.wait_models(&["linear"]).await;

    let rows = [[2.0, 0.0, 1.0, -1.0]];
    let mut cached_job = linear_job(&rows);
    cached_job["parameters"] = json!({"cache": true});
    let first = app.submit(&cached_job).await;
    let record = app.wait_done(&first, DONE).await;
    assert_eq!(record["status"], "succeeded");
    assert!(record.get("cached").is_none(), "{record}");
    assert_eq!(record["attempts"], 1);

    // Same inputs, other parameters: answered at once from the cache.
    cached_job["parameters"] = json!({"cache": true, "timeout_ms": 60000});
    let (status, answer) = app.post_json("/jobs", &cached_job).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "succeeded", "{answer}");
    let (_, hit) = app.get(answer["status_url"].as_str().unwrap()).await;
    assert_eq!(hit["cached"], true, "{hit}");
    assert_eq!(hit["attempts"], 0, "{hit}");
    assert_eq!(
        hit["result"]["outputs"], record["result"]["outputs"],
        "{hit}"
    );
    // In a batch too; without the parameter, or with other inputs, the job runs.
    let (_, batch) = app
        .post_json("/jobs/batch", &json!({"jobs": [cached_job.clone()]}))
        .await;
    assert_eq!(batch["jobs"][0]["status"], "succeeded", "{batch}");
    let plain = app.submit(&linear_job(&rows)).await;
    let record = app.wait_done(&plain, DONE).await;
    assert!(record.get("cached").is_none(), "{record}");
    let mut other = linear_job(&[[2.0, 0.0, 1.0, -2.0]]);
    other["parameters"] = json!({"cache": true});
    let id = app.submit(&other).await;
    let record = app.wait_done(&id, DONE).await;
    assert!(record.get("cached").is_none(), "{record}");
    assert_eq!(record["attempts"], 1);

    // A new model file (same graph, another doc string appended as a protobuf field) has
    // another hash: the cache does not answer for it.
    let hash = |models: &Value| {
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "linear")
            .unwrap()["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, models) = app.get("/models").await;
    let old = hash(&models);
    assert_eq!(old.len(), 64);
    w.signal("TERM");
    w.wait_exit(Duration::from_secs(30));
    let mut bytes = std::fs::read(&onnx).unwrap();
    bytes.extend_from_slice(&[0x32, 0x02, b'v', b'2']);
    std::fs::write(&onnx, bytes).unwrap();
    let _w2 = app.worker(&dir, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while hash(&app.get("/models").await.1) == old {
        assert!(
            std::time::Instant::now() < deadline,
            "the new hash never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The API's model cache refreshes within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let id = app.submit(&cached_job).await;
    let record = app.wait_done(&id, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert!(record.get("cached").is_none(), "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
}

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
    assert_eq!(calls("xadd"), JOBS, "{info}");
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
