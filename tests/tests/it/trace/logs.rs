//! A `traceparent` reaches the worker's log lines from every way in; invalid ones are ignored.

use std::time::Duration;

use serde_json::{Value, json};

use super::{TRACE_A, TRACE_B, TRACE_C, TRACE_D, submit_json, trace_id};
use crate::support::{spawn_app, test_models};

fn linear_rows() -> Vec<f32> {
    vec![1.0, 2.0, 3.0, 4.0]
}

/// The JSON log lines of a worker that are inside the span of job `id`.
fn job_lines(log: &str, id: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["job_id"] == id)
        .collect()
}

#[tokio::test]
async fn a_traceparent_reaches_the_workers_log_lines_and_an_invalid_one_is_ignored() {
    let app = spawn_app().await;
    let worker = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "linear"),
            ("INFERQ_LOG_JSON", "true"),
            ("RUST_LOG", "warn,inferq_worker=debug"),
        ],
    );
    app.wait_models(&["linear"]).await;
    let x = linear_rows();
    let job = json!({"model": "linear", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]});

    // The submission paths: JSON, binary-framed, a batch, and the OIP infer route.
    let json_id = submit_json(&app, &app.base, &job, &[TRACE_A]).await;
    let head = json!({"model": "linear", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]});
    let mut body = serde_json::to_vec(&head).unwrap();
    let n = body.len();
    body.extend(x.iter().flat_map(|f| f.to_le_bytes()));
    let r = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("content-type", "application/octet-stream")
        .header("Inference-Header-Content-Length", n)
        .header("traceparent", TRACE_B)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let binary_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .http
        .post(format!("{}/jobs/batch", app.base))
        .header("traceparent", TRACE_D)
        .json(&json!({"jobs": [job, job]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let batch: Vec<String> = r.json::<Value>().await.unwrap()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(batch.len(), 2);
    let oip = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]});
    let r = app
        .http
        .post(format!("{}/v2/models/linear/infer", app.base))
        .header("traceparent", TRACE_C)
        .json(&oip)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Invalid headers (and two at once) are ignored, never an error, and the job still runs.
    let invalid = [
        vec!["00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"],
        vec!["00-00000000000000000000000000000000-b7ad6b7169203331-01"],
        vec!["00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"],
        vec!["ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
        vec!["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"],
        vec!["not a traceparent"],
        vec![TRACE_A, TRACE_B],
    ];
    let mut ignored = Vec::new();
    for tps in &invalid {
        ignored.push(submit_json(&app, &app.base, &job, tps).await);
    }
    for id in [&json_id, &binary_id]
        .into_iter()
        .chain(&batch)
        .chain(&ignored)
    {
        let record = app.wait_done(id, Duration::from_secs(20)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }

    let log = worker.log_text();
    let traced = [(&json_id, TRACE_A), (&binary_id, TRACE_B)];
    for (id, tp) in traced
        .into_iter()
        .chain(batch.iter().map(|id| (id, TRACE_D)))
    {
        let lines = job_lines(&log, id);
        assert!(!lines.is_empty(), "no log line for job {id}:\n{log}");
        for l in lines {
            assert_eq!(l["span"]["trace_id"], trace_id(tp), "{l}");
        }
    }
    // The OIP job's id is not in the answer: find it by its trace.
    let oip_lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["trace_id"] == trace_id(TRACE_C))
        .collect();
    assert!(!oip_lines.is_empty(), "no log line of the OIP job:\n{log}");
    assert!(oip_lines.iter().all(|l| l["span"]["name"] == "job"));
    for id in &ignored {
        let lines = job_lines(&log, id);
        assert!(!lines.is_empty(), "no log line for job {id}:\n{log}");
        for l in lines {
            assert!(l["span"].get("trace_id").is_none(), "{l}");
        }
    }
}
