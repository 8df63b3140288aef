//! The result cache: identical jobs answered at once until the model file changes.

use std::time::Duration;

use serde_json::{Value, json};

use super::DONE;
use crate::support::{eventually, linear_job, spawn_app, test_models};

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
    eventually(Duration::from_secs(30), "the new hash shows", async || {
        hash(&app.get("/models").await.1) != old
    })
    .await;
    // The API's model cache refreshes within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let id = app.submit(&cached_job).await;
    let record = app.wait_done(&id, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert!(record.get("cached").is_none(), "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
}
