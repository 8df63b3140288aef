//! The OpenAI face (`/v1`) against a real API with keys, real workers and the real embedding
//! model: the unmodified `openai` SDK (tests/openai/openai_sdk_check.py, run from .venv-test)
//! through embeddings, models, files and batches with two tenants; and a worker killed with
//! SIGKILL in the middle of a batch, which still completes with every request answered once.

mod packing;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::texts::embedding_worker;
use crate::support::{App, AppOptions, eventually, eventually_every, repo_root, spawn_app_with};

const ADMIN: &str = "bootstrap-admin-key-for-the-openai-tests-0123456789";
const MODEL: &str = "all-MiniLM-L6-v2";

async fn secured_app() -> App {
    spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        max_wait_secs: 120,
        ..Default::default()
    })
    .await
}

/// A key of `tenant` with the submit and read scopes.
async fn key(app: &App, tenant: &str) -> String {
    let (status, body) = app
        .client(ADMIN)
        .post_json(
            "/keys",
            &json!({"tenant": tenant, "scopes": ["submit", "read"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

/// The unmodified `openai` package against inferq; the script's checks are listed in its
/// header.
#[tokio::test]
async fn the_openai_sdk_works_unmodified() {
    let app = secured_app().await;
    let _w = [embedding_worker(&app, &[]), embedding_worker(&app, &[])];
    let (red, blue) = (key(&app, "red").await, key(&app, "blue").await);
    app.client(&red).wait_models(&[MODEL]).await;
    let python = repo_root().join(".venv-test/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh --test (it installs openai)",
        python.display()
    );
    let out = tokio::process::Command::new(python)
        .arg(repo_root().join("tests/openai/openai_sdk_check.py"))
        .args([&app.base, &red, &blue])
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

/// A multipart body with the file part `file` and the text part `purpose=batch`.
fn upload_form(content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "inferq-openai-test-3c1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn call(key: &str, req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.bearer_auth(key).send().await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

/// Uploads `lines` as a batch input file and starts its batch: the batch's URL.
async fn start_batch(app: &App, key: &str, lines: &[String]) -> String {
    let (content_type, form) = upload_form(lines.join("\n").as_bytes());
    let (status, file) = call(
        key,
        app.http
            .post(format!("{}/v1/files", app.base))
            .header("content-type", content_type)
            .body(form),
    )
    .await;
    assert_eq!(status, 200, "{file}");
    let (status, batch) = call(
        key,
        app.http.post(format!("{}/v1/batches", app.base)).json(&json!({
            "input_file_id": file["id"], "endpoint": "/v1/embeddings", "completion_window": "24h"
        })),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    format!("{}/v1/batches/{}", app.base, batch["id"].as_str().unwrap())
}

/// The lines of the file `id` (a batch's output or error file), parsed.
async fn file_lines(app: &App, key: &str, id: &Value) -> Vec<Value> {
    let url = format!("{}/v1/files/{}/content", app.base, id.as_str().unwrap());
    let r = app.http.get(url).bearer_auth(key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The batch at `url` once final.
async fn wait_final(app: &App, key: &str, url: &str) -> Value {
    eventually_every(
        Duration::from_millis(200),
        Duration::from_secs(300),
        "the batch is final",
        async || {
            let b = call(key, app.http.get(url)).await.1;
            let status = b["status"].as_str().unwrap_or("").to_owned();
            if ["completed", "failed", "cancelled", "expired"].contains(&status.as_str()) {
                Ok(b)
            } else {
                Err(b)
            }
        },
    )
    .await
}

/// A worker killed with SIGKILL in the middle of a batch: its jobs are taken over once their
/// leases pass, the batch completes, and its output answers every request exactly once.
#[tokio::test]
async fn a_worker_killed_mid_batch_loses_no_request() {
    const N: usize = 1200;
    let app = secured_app().await;
    let doomed = embedding_worker(&app, &[]);
    let _survivor = embedding_worker(&app, &[]);
    let red = key(&app, "red").await;
    app.client(&red).wait_models(&[MODEL]).await;
    let lines: Vec<String> = (0..N)
        .map(|i| {
            let texts: Vec<String> = (0..4)
                .map(|k| format!("request {i} text {k}: a worker may die at any moment"))
                .collect();
            json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/embeddings",
                "body": {"model": MODEL, "input": texts}})
            .to_string()
        })
        .collect();
    let url = start_batch(&app, &red, &lines).await;
    let read = async || call(&red, app.http.get(&url)).await.1;
    eventually(
        Duration::from_secs(120),
        "some requests of the batch are done",
        async || {
            let b = read().await;
            if b["request_counts"]["completed"].as_u64() > Some(0) {
                Ok(b)
            } else {
                Err(b)
            }
        },
    )
    .await;
    doomed.signal("KILL");
    let done = wait_final(&app, &red, &url).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["request_counts"],
        json!({"total": N, "completed": N, "failed": 0}),
        "{done}"
    );
    let output = file_lines(&app, &red, &done["output_file_id"]).await;
    let mut seen = HashSet::new();
    for v in output {
        assert_eq!(v["response"]["status_code"], 200, "{v}");
        assert_eq!(v["response"]["body"]["data"].as_array().unwrap().len(), 4);
        assert!(
            seen.insert(v["custom_id"].as_str().unwrap().to_owned()),
            "{v}"
        );
    }
    assert_eq!(seen.len(), N);
}
