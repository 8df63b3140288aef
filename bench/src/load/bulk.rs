//! Bulk submission under load: `POST /jobs/batch`, submit only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;

use super::figures::{LoadConfig, LoadResult};

/// Bulk submission: each client takes `per` job numbers at a time and submits them in one
/// `POST /jobs/batch`, counting the items answered with an id as accepted.
pub(super) async fn run(
    client: reqwest::Client,
    cfg: LoadConfig,
    bodies: Arc<Vec<String>>,
    per: usize,
) -> anyhow::Result<LoadResult> {
    let url = format!("{}/jobs/batch", cfg.api_url);
    let (jobs, next) = (cfg.jobs, Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let tasks: Vec<_> = (0..cfg.concurrency.max(1))
        .map(|_| {
            let (client, bodies, next, url) =
                (client.clone(), bodies.clone(), next.clone(), url.clone());
            tokio::spawn(async move {
                let mut out = LoadResult::default();
                loop {
                    let first = next.fetch_add(per, Ordering::Relaxed);
                    if first >= jobs {
                        return out;
                    }
                    let n = per.min(jobs - first);
                    let items: Vec<&str> = (first..first + n)
                        .map(|i| bodies[i % bodies.len()].as_str())
                        .collect();
                    let body = format!("{{\"jobs\":[{}]}}", items.join(","));
                    match submit_bulk(&client, &url, body).await {
                        Ok(accepted) => {
                            out.accepted += accepted;
                            out.rejected += n - accepted;
                        }
                        Err(e) => {
                            out.rejected += n;
                            out.note(format!("batch: {e:#}"));
                        }
                    }
                    out.submit_wall = start.elapsed();
                    out.wall = out.submit_wall;
                }
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for t in tasks {
        total.merge(t.await.context("a load client panicked")?);
    }
    Ok(total)
}

/// Sends one batch; returns how many of its jobs were accepted.
async fn submit_bulk(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<usize> {
    #[derive(Deserialize)]
    struct Answer {
        jobs: Vec<serde_json::Value>,
    }
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = res.status();
    if !status.is_success() {
        anyhow::bail!("{status}: {}", res.text().await.unwrap_or_default());
    }
    let answer: Answer = res.json().await?;
    Ok(answer.jobs.iter().filter(|j| j.get("id").is_some()).count())
}
