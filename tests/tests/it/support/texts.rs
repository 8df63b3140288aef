//! The text embeddings pipeline's fixtures: a worker serving all-MiniLM-L6-v2, texts submitted
//! as JSON or as a multipart file, the vectors of a result, and the Python reference
//! (scripts/embedding_reference.py).

use serde_json::{Value, json};

use super::audio::models_dir;
use super::{App, Worker, repo_root, test_venv};

pub(crate) const DIMENSIONS: usize = 384;

pub(crate) fn embedding_worker(app: &App, env: &[(&str, &str)]) -> Worker {
    let mut all = vec![("INFERQ_MODELS", "all-MiniLM-L6-v2")];
    all.extend_from_slice(env);
    app.worker(&models_dir(), &all)
}

/// Submits `texts` as JSON and answers the status code and body.
pub(crate) async fn post_texts(app: &App, texts: &[String], parameters: Value) -> (u16, Value) {
    app.post_json(
        "/jobs",
        &json!({"pipeline": "text_embeddings", "texts": texts, "parameters": parameters}),
    )
    .await
}

pub(crate) async fn submit_texts(app: &App, texts: &[String], parameters: Value) -> String {
    let (status, body) = post_texts(app, texts, parameters).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Submits a multipart body with the file part `texts` (and `parameters` when given).
pub(crate) async fn post_file(app: &App, file: &[u8], parameters: Option<&Value>) -> (u16, Value) {
    let boundary = "inferq-test-boundary-5e2a";
    let mut body = Vec::new();
    let mut text = |name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    text("pipeline", "text_embeddings");
    if let Some(p) = parameters {
        text("parameters", &p.to_string());
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"texts\"; filename=\"t\"\r\n\
             Content-Type: text/plain\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = app
        .http
        .post(format!("{}/jobs", app.base))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The vectors of a result, whichever their encoding.
pub(crate) fn vectors(result: &Value) -> Vec<Vec<f32>> {
    result["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e {
            Value::String(b64) => {
                let bytes = base64_decode(b64);
                assert_eq!(bytes.len(), DIMENSIONS * 4);
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            v => v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The reference vectors and token counts of `texts` (scripts/embedding_reference.py: Hugging
/// Face's Python tokenizers and onnxruntime, one text at a time).
pub(crate) async fn python_reference(texts: &[String]) -> (Vec<Vec<f32>>, Vec<u64>) {
    let root = repo_root();
    let python = test_venv("python");
    let input = serde_json::to_vec(texts).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(python)
            .arg(root.join("scripts/embedding_reference.py"))
            .arg("--model-dir")
            .arg(root.join("models/all-MiniLM-L6-v2"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "embedding_reference.py failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts = v["token_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    (vectors(&v), counts)
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .take(4 - pad)
            .fold(0u32, |n, &c| (n << 6) | value(c))
            << (6 * pad);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}
