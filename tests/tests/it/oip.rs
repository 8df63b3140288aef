//! The Open Inference Protocol v2 routes: raw JSON and binary-framed requests, the protocol's
//! error shape, a timeout that leaves the job running, and the unmodified Triton client.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{assert_close, linear_expected, repo_root, slow_job, spawn_app, test_models};

/// Body with the binary extension: the JSON header, then raw little-endian floats.
fn framed(header: &Value, floats: &[f32]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(header).unwrap();
    let n = body.len();
    for f in floats {
        body.extend_from_slice(&f.to_le_bytes());
    }
    (body, n)
}

#[tokio::test]
async fn oip_infer_speaks_json_and_binary_and_the_protocols_errors() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let rows = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]];
    let x: Vec<f32> = rows.iter().flatten().copied().collect();

    // JSON in and out, no Content-Type (as OIP clients send).
    let body = json!({"id": "r1", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": x}]});
    let r = app
        .http
        .post(format!("{}/v2/models/linear/infer", app.base))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["model_name"].as_str(),
            v["model_version"].as_str(),
            v["id"].as_str()
        ),
        (Some("linear"), Some("1"), Some("r1"))
    );
    assert_eq!(v["outputs"][0]["shape"], json!([2, 3]));
    assert_close(&v["outputs"][0]["data"], &linear_expected(&rows), 1e-5);

    // Binary in, binary out.
    let header = json!({
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}]
    });
    let (body, n) = framed(&header, &x);
    let r = app
        .http
        .post(format!("{}/v2/models/linear/versions/1/infer", app.base))
        .header("Inference-Header-Content-Length", n)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 24);
    let y: Vec<Value> = bytes[json_len..]
        .chunks(4)
        .map(|c| json!(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    assert_close(&Value::Array(y), &linear_expected(&rows), 1e-5);

    // Errors: the protocol's shape and statuses.
    let post = |path: &str, body: Vec<u8>| {
        app.http
            .post(format!("{}{path}", app.base))
            .body(body)
            .send()
    };
    for (path, body, status) in [
        ("/v2/models/nope/infer", serde_json::to_vec(&json!({"inputs": []})).unwrap(), 404),
        ("/v2/models/linear/versions/9/infer", serde_json::to_vec(&json!({"inputs": []})).unwrap(), 404),
        ("/v2/models/linear/infer", b"{not json".to_vec(), 400),
        (
            "/v2/models/linear/infer",
            serde_json::to_vec(&json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}]})).unwrap(),
            400,
        ),
        (
            "/v2/models/linear/infer",
            serde_json::to_vec(&json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16", "data": [1, 2, 3, 4]}]})).unwrap(),
            400,
        ),
    ] {
        let r = post(path, body).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // A binary size that runs past the body.
    let header = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 64}}]});
    let (body, n) = framed(&header, &[1.0; 4]);
    let r = app
        .http
        .post(format!("{}/v2/models/linear/infer", app.base))
        .header("Inference-Header-Content-Length", n)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Health and metadata.
    assert_eq!(app.get("/v2/health/live").await.0, 200);
    assert_eq!(app.get("/v2/health/ready").await.0, 200);
    let (_, meta) = app.get("/v2").await;
    assert_eq!(meta["extensions"], json!(["binary_tensor_data"]));
    let (status, model) = app.get("/v2/models/linear").await;
    assert_eq!(status, 200);
    assert_eq!(model["versions"], json!(["1"]));
    assert_eq!(
        model["inputs"][0],
        json!({"name": "x", "datatype": "FP32", "shape": [-1, 4]})
    );
    assert_eq!(app.get("/v2/models/linear/ready").await.0, 200);
    assert_eq!(app.get("/v2/models/nope/ready").await.0, 404);
}

/// An inference that does not finish within its `timeout_ms` answers an error naming the job,
/// which keeps running and is fetched later.
#[tokio::test]
async fn an_oip_inference_past_its_timeout_leaves_the_job_running() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    let mut body = slow_job(2.0);
    body.as_object_mut().unwrap().remove("model");
    body["parameters"] = json!({"timeout_ms": 1});
    let r = app
        .http
        .post(format!("{}/v2/models/slow/infer", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let id = r.headers()["inferq-job-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains(&id), "{v}");
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["result"]["outputs"][0]["data"], json!([3.0]));
}

/// The unmodified NVIDIA Triton client (tritonclient[http], installed by scripts/setup.sh into
/// .venv-test) against inferq: defaults (binary both ways), JSON, errors, async_infer.
#[tokio::test]
async fn the_triton_client_works_unmodified() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear,half,strings")]);
    app.wait_models(&["linear", "half", "strings"]).await;
    let python = repo_root().join(".venv-test/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs tritonclient)",
        python.display()
    );
    let host = app.base.trim_start_matches("http://").to_owned();
    let script = repo_root().join("tests/oip/triton_client_check.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(host)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
}

/// `POST /jobs` takes the same binary framing (a JSON header, then raw tensors), and
/// `GET /status/<id>` with `Accept: application/octet-stream` answers with binary outputs.
#[tokio::test]
async fn jobs_take_and_give_binary_tensors_on_request() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let rows = [[1.0, -2.0, 0.5, 4.0]];
    let header = json!({
        "model": "linear",
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]
    });
    let (body, n) = framed(&header, &rows[0]);
    let submit = |body: Vec<u8>, n: usize| {
        app.http
            .post(format!("{}/jobs", app.base))
            .header("content-type", "application/octet-stream")
            .header("Inference-Header-Content-Length", n)
            .body(body)
            .send()
    };
    let r = submit(body.clone(), n).await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // JSON stays the default.
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&rows),
        1e-5,
    );
    let r = app
        .http
        .get(format!("{}/status/{id}", app.base))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["status"], "succeeded");
    let out = &head["result"]["outputs"][0];
    assert_eq!(out["parameters"]["binary_data_size"], 12);
    assert!(out.get("data").is_none(), "{head}");
    let y: Vec<Value> = bytes[json_len..]
        .chunks(4)
        .map(|c| json!(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    assert_close(&Value::Array(y), &linear_expected(&rows), 1e-5);

    // Framing mistakes are 400; a wrong input name is the usual 422.
    let r = submit(body.clone(), body.len() + 1).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = submit(body[..body.len() - 4].to_vec(), n).await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    let wrong = json!({
        "model": "linear",
        "inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]
    });
    let (body, n) = framed(&wrong, &rows[0]);
    let r = submit(body, n).await.unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unknown_input", "{v}");
    let r = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a binary body without its header length");
}
