//! The speech pipeline's fixtures: the recordings of tests/audio/ and their reference
//! segments, a worker serving Silero VAD, and audio submitted as a multipart upload.

use std::path::PathBuf;

use redis::AsyncCommands;
use serde_json::Value;

use super::{App, Worker, job_id, repo_root};

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = repo_root().join("tests/audio").join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/gen_audio_fixtures.sh (scripts/setup.sh does)",
            path.display()
        )
    })
}

pub(crate) fn reference(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

pub(crate) fn models_dir() -> PathBuf {
    repo_root().join("models")
}

pub(crate) fn speech_worker(app: &App, env: &[(&str, &str)]) -> Worker {
    let mut all = vec![("INFERQ_MODELS", "silero_vad")];
    all.extend_from_slice(env);
    app.worker(&models_dir(), &all)
}

/// A `multipart/form-data` body: `pipeline`, the file part `audio`, optional `parameters`.
pub(crate) fn multipart(file: &[u8], parameters: Option<&Value>) -> (String, Vec<u8>) {
    let boundary = "inferq-test-boundary-7d1f";
    let mut body = Vec::new();
    let mut text = |name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    text("pipeline", "speech_segments");
    if let Some(p) = parameters {
        text("parameters", &p.to_string());
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn post_audio(app: &App, file: &[u8], parameters: Option<&Value>) -> (u16, Value) {
    let (content_type, body) = multipart(file, parameters);
    let r = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn submit_audio(app: &App, file: &[u8], parameters: Option<&Value>) -> String {
    let (status, body) = post_audio(app, file, parameters).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn upload_exists(app: &App, id: &str) -> bool {
    let mut conn = app.redis.conn().await;
    conn.exists(app.keys().upload(job_id(id))).await.unwrap()
}
