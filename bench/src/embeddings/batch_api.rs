//! The embeddings corpus through the OpenAI Batch API, as its clients send it: a JSONL file of
//! `/v1/embeddings` requests (one text each) uploaded with `POST /v1/files`, one
//! `POST /v1/batches`, then `GET /v1/batches/<id>` until the batch completes.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cluster::Cluster;

/// Runs the batch to completion; returns the requests that completed and the prompt tokens.
pub(super) async fn run(
    client: &reqwest::Client,
    cluster: &Cluster,
    texts: &[String],
) -> anyhow::Result<(usize, u64)> {
    let api = &cluster.api_url;
    let mut jsonl = String::new();
    for (i, t) in texts.iter().enumerate() {
        let line = json!({
            "custom_id": format!("r{i}"), "method": "POST", "url": "/v1/embeddings",
            "body": {"model": super::MODEL, "input": t, "encoding_format": "base64"},
        });
        jsonl.push_str(&line.to_string());
        jsonl.push('\n');
    }
    // multipart/form-data by hand: the purpose, then the file.
    let boundary = "inferq-bench-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"corpus.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(jsonl.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let file: Value = answer(
        client
            .post(format!("{api}/v1/files"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body),
    )
    .await
    .context("uploading the batch file")?;
    let batch: Value = answer(client.post(format!("{api}/v1/batches")).json(&json!({
        "input_file_id": file["id"], "endpoint": "/v1/embeddings", "completion_window": "24h",
    })))
    .await
    .context("creating the batch")?;
    let id = batch["id"]
        .as_str()
        .context("the batch has no id")?
        .to_owned();
    loop {
        let b: Value = answer(client.get(format!("{api}/v1/batches/{id}"))).await?;
        match b["status"].as_str() {
            Some("completed") => {
                let done = b["request_counts"]["completed"].as_u64().unwrap_or(0) as usize;
                let tokens = b["usage"]["input_tokens"]
                    .as_u64()
                    .or_else(|| b["usage"]["prompt_tokens"].as_u64())
                    .unwrap_or(0);
                return Ok((done, tokens));
            }
            Some("failed" | "cancelled" | "expired") => bail!("the batch ended {b}"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn answer(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let r = req.send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "{status}: {v}");
    Ok(v)
}
