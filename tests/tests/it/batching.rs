//! Cross-job batching gives the same results as running each job alone, and `?wait=` returns
//! as soon as a job finishes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use inferq_shared::config::RedisConfig;
use inferq_shared::queue::Queue;
use serde_json::{Value, json};

use crate::support::*;

fn mlp_job(i: usize, rows: usize) -> Value {
    let x: Vec<f32> = (0..rows * 64)
        .map(|k| (((i * 131 + k * 17) % 101) as f32 - 50.0) / 25.0)
        .collect();
    json!({"model": "mlp_small", "inputs": [{"name": "x", "shape": [rows, 64], "datatype": "FP32", "data": x}]})
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn batched_results_equal_unbatched_results() {
    let app = spawn_app().await;
    // Jobs of 1 to 4 rows each, mixed.
    let jobs: Vec<Value> = (0..40).map(|i| mlp_job(i, 1 + i % 4)).collect();

    // Reference: one job per run.
    let mut alone = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "mlp_small"),
            ("INFERQ_THREADS", "1"),
            ("INFERQ_MAX_BATCH_SIZE", "1"),
        ],
    );
    app.wait_models(&["mlp_small"]).await;
    let (_, listing) = app.get("/models").await;
    assert_eq!(listing["models"][0]["batching"], true);
    let ids = app.submit_all(&jobs).await;
    let mut reference = Vec::new();
    for id in &ids {
        let r = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        reference.push(r["result"]["outputs"][0].clone());
    }
    alone.signal("TERM");
    assert_eq!(alone.wait_exit(Duration::from_secs(30)), Some(0));

    // The same jobs queue up with no worker running, plus one whose input does not fit the
    // model (written straight to Redis, past the API's validation) in the middle.
    let mut ids = app.submit_all(&jobs[..20]).await;
    let queue = Queue::connect(
        &RedisConfig::new(&app.redis.url(), &app.namespace),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let bad_id = inferq_shared::JobId::new();
    let bad = json!({"model": "mlp_small", "inputs": [{"name": "x", "shape": [1, 63], "datatype": "FP32", "data": vec![0.0; 63]}]});
    queue
        .submit(
            bad_id,
            "mlp_small",
            bad.to_string().as_bytes(),
            0,
            None,
            None,
            "default",
        )
        .await
        .unwrap();
    ids.extend(app.submit_all(&jobs[20..]).await);

    // One thread, batches of up to 64 rows: the backlog goes through in a few runs.
    let _batched = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "mlp_small"),
            ("INFERQ_THREADS", "1"),
            ("INFERQ_MAX_BATCH_SIZE", "64"),
        ],
    );
    let bad = app
        .wait_done(&bad_id.to_string(), Duration::from_secs(60))
        .await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["error"]["code"], "shape_mismatch", "{bad}");
    let mut started = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let r = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        let out = &r["result"]["outputs"][0];
        assert_eq!(out["shape"], reference[i]["shape"]);
        assert_close(&out["data"], &floats(&reference[i]["data"]), 1e-4);
        started.insert(r["started_at"].as_str().unwrap().to_owned());
    }
    // Jobs started together were read and run as one batch.
    assert!(
        started.len() <= 5,
        "jobs were not batched: {} distinct start times",
        started.len()
    );
}

#[tokio::test]
async fn linear_batches_mix_row_counts_correctly() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["linear"]).await;
    // Checked against the formula, whatever batches the worker forms.
    let jobs: Vec<Vec<[f32; 4]>> = (0..200)
        .map(|i| {
            (0..1 + i % 5)
                .map(|r| [i as f32, r as f32, -1.0, 0.5 * i as f32])
                .collect()
        })
        .collect();
    let bodies: Vec<Value> = jobs.iter().map(|rows| linear_job(rows)).collect();
    let ids = app.submit_all(&bodies).await;
    for (i, id) in ids.iter().enumerate() {
        let r = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_close(
            &r["result"]["outputs"][0]["data"],
            &linear_expected(&jobs[i]),
            1e-5,
        );
    }
}

#[tokio::test]
async fn wait_returns_on_completion_and_on_timeout() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["slow"]).await;

    let first = app.submit(&slow_job(1.0)).await;
    let t = Instant::now();
    let (status, r) = app.get(&format!("/status/{first}?wait=30")).await;
    assert_eq!(status, 200);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["result"]["outputs"][0]["data"], json!([2.0]));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "wait took {:?}",
        t.elapsed()
    );

    // Queued behind two slow jobs: the wait ends at its timeout with the current record.
    let _a = app.submit(&slow_job(2.0)).await;
    let _b = app.submit(&slow_job(3.0)).await;
    let last = app.submit(&slow_job(4.0)).await;
    let t = Instant::now();
    let (status, r) = app.get(&format!("/status/{last}?wait=0.3")).await;
    let waited = t.elapsed();
    assert_eq!(status, 200);
    assert!(
        matches!(r["status"].as_str(), Some("queued" | "running")),
        "{r}"
    );
    assert!(
        waited >= Duration::from_millis(300),
        "returned early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "returned late: {waited:?}");

    // A finished job answers at once; bad waits and ids are client errors.
    let t = Instant::now();
    assert_eq!(
        app.get(&format!("/status/{first}?wait=30")).await.1["status"],
        "succeeded"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    for bad in ["abc", "-1", "NaN"] {
        let (status, body) = app.get(&format!("/status/{first}?wait={bad}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
    let (status, _) = app
        .get(&format!("/status/{}?wait=5", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, 404);
    let r = app.wait_done(&last, Duration::from_secs(60)).await;
    assert_eq!(r["status"], "succeeded");
}

#[tokio::test]
async fn submit_can_wait_for_the_result() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["slow"]).await;

    // Finished within the wait: 200 with the whole record.
    let r = app
        .http
        .post(format!("{}/jobs?wait=30", app.base))
        .json(&slow_job(5.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["result"]["outputs"][0]["data"], json!([6.0]));
    assert_eq!(
        location,
        format!("/status/{}", record["id"].as_str().unwrap())
    );

    // Not finished within the wait: the usual 202, and the job goes on.
    let _busy = app.submit(&slow_job(1.0)).await;
    let t = Instant::now();
    let (status, body) = app.post_json("/jobs?wait=0.2", &slow_job(2.0)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert!(t.elapsed() >= Duration::from_millis(200));
    let done = app
        .wait_done(body["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["result"]["outputs"][0]["data"], json!([3.0]));

    let (status, body) = app.post_json("/jobs?wait=x", &slow_job(2.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
}
