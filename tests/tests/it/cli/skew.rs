//! The client against a server of another version: answers with fields it does not know and
//! without optional fields it does know. It ignores the first, shows the second as unknown
//! (`?`) and never fails on them; `--json` prints what the server sent, byte for byte.

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use super::inferq;
use crate::support::servers::serve;

/// `GET /models`, `/workers`, `/queues` and `/status/<id>` as an older server (no `workers` per
/// model, no counters) that a newer one also extends with fields of its own would answer.
async fn skewed_server() -> String {
    let models = json!({"models": [{
        "name": "linear", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
        "batching": true, "max_batch_size": 32, "accelerator": "npu-9000"}]});
    let workers = json!({"workers": [{"id": "w-1", "models": ["linear"], "zone": "b"}]});
    let queues = json!({"queues": {"linear": {"depth": 3, "priority_lanes": 2}}, "shards": 4});
    let record = json!({"id": "0f3c2d3e-0000-4000-8000-000000000001", "status": "succeeded",
        "result": {"outputs": []}, "error": null, "region": "eu"});
    let answer = |v: Value| move || async move { axum::Json(v) };
    serve(
        Router::new()
            .route("/models", get(answer(models)))
            .route("/workers", get(answer(workers)))
            .route("/queues", get(answer(queues)))
            .route("/status/{id}", get(answer(record))),
    )
    .await
}

#[tokio::test]
async fn answers_of_another_version_are_read_tolerantly() {
    let base = skewed_server().await;

    let run = inferq(&base, &["models"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("linear"))
        .unwrap();
    assert!(
        row.contains('?'),
        "the missing worker count shows as unknown: {run:?}"
    );

    let run = inferq(&base, &["models", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.json()["models"][0]["accelerator"],
        "npu-9000",
        "{run:?}"
    );
    assert!(run.json()["models"][0].get("workers").is_none(), "{run:?}");

    let run = inferq(&base, &["workers"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let row = run.stdout.lines().find(|l| l.starts_with("w-1")).unwrap();
    assert!(row.contains("linear") && row.contains('?'), "{run:?}");

    let run = inferq(&base, &["queues"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("linear"))
        .unwrap();
    assert!(row.contains('3') && row.contains('?'), "{run:?}");
    assert!(run.stdout.contains("dead letters: ?"), "{run:?}");

    let run = inferq(&base, &["status", "0f3c2d3e-0000-4000-8000-000000000001"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("succeeded"), "{run:?}");
    assert!(run.stdout.contains("attempts  ?"), "{run:?}");
}
