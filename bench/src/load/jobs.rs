//! The job API under load: each client submits a job (`POST /jobs`, optionally with `?wait=`)
//! and long-polls its status until it is terminal, then takes the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use super::figures::{LoadConfig, LoadResult, WAIT_SECS};

#[derive(Deserialize)]
struct Accepted {
    id: String,
}

#[derive(Deserialize)]
struct Status {
    status: String,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The closed loop: `concurrency` clients take job numbers until all are taken.
pub(super) async fn run(
    client: reqwest::Client,
    cfg: LoadConfig,
    bodies: Arc<Vec<String>>,
) -> anyhow::Result<LoadResult> {
    let cfg = Arc::new(cfg);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..cfg.concurrency.max(1))
        .map(|_| {
            let (client, bodies, cfg, next) =
                (client.clone(), bodies.clone(), cfg.clone(), next.clone());
            tokio::spawn(async move { client_loop(&client, &bodies, &cfg, &next, start).await })
        })
        .collect();
    let mut total = LoadResult::default();
    for t in tasks {
        total.merge(t.await.context("a load client panicked")?);
    }
    Ok(total)
}

/// One client: takes job numbers from `next` until all are taken.
async fn client_loop(
    client: &reqwest::Client,
    bodies: &[String],
    cfg: &LoadConfig,
    next: &AtomicUsize,
    start: Instant,
) -> LoadResult {
    let mut out = LoadResult::default();
    let submit_url = if cfg.submit_wait {
        format!("{}/jobs?wait={WAIT_SECS}", cfg.api_url)
    } else {
        format!("{}/jobs", cfg.api_url)
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= cfg.jobs {
            return out;
        }
        let began = Instant::now();
        let key = cfg.idempotency.then(|| format!("bench-{i}"));
        let id = match submit(client, &submit_url, &bodies[i % bodies.len()], key).await {
            Ok(Submitted::Done(s)) => {
                out.accepted += 1;
                if s.status == "succeeded" {
                    out.latencies.push(began.elapsed());
                    out.succeeded += 1;
                } else {
                    out.failed += 1;
                    out.note(format!("job {}: {}", s.status, s.error.unwrap_or_default()));
                }
                out.wall = start.elapsed();
                out.submit_wall = out.wall;
                continue;
            }
            Ok(Submitted::Accepted(id)) => id,
            Err(e) => {
                out.rejected += 1;
                out.note(format!("submit: {e:#}"));
                continue;
            }
        };
        out.accepted += 1;
        out.submit_wall = start.elapsed();
        out.wall = out.submit_wall;
        if cfg.submit_only {
            continue;
        }
        let status_url = format!("{}/status/{id}", cfg.api_url);
        let deadline = began + cfg.job_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                out.lost += 1;
                break;
            }
            let wait = left.as_secs_f64().min(WAIT_SECS as f64);
            match status(client, &status_url, wait).await {
                Ok(s) if s.status == "succeeded" => {
                    out.latencies.push(began.elapsed());
                    out.succeeded += 1;
                    break;
                }
                Ok(s) if matches!(s.status.as_str(), "failed" | "cancelled") => {
                    out.failed += 1;
                    out.note(format!("job {}: {}", s.status, s.error.unwrap_or_default()));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    out.status_errors += 1;
                    out.note(format!("status: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        out.wall = start.elapsed();
    }
}

enum Submitted {
    /// `202`: queued (or not finished within the submit's wait).
    Accepted(String),
    /// `200`: finished within the submit's wait; the record.
    Done(Status),
}

async fn submit(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    idempotency_key: Option<String>,
) -> anyhow::Result<Submitted> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = idempotency_key {
        req = req.header("idempotency-key", key);
    }
    let resp = req.send().await?;
    let code = resp.status();
    let bytes = resp.bytes().await?;
    if code == reqwest::StatusCode::OK {
        return Ok(Submitted::Done(serde_json::from_slice(&bytes)?));
    }
    anyhow::ensure!(
        code == reqwest::StatusCode::ACCEPTED,
        "HTTP {code}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    Ok(Submitted::Accepted(
        serde_json::from_slice::<Accepted>(&bytes)?.id,
    ))
}

async fn status(client: &reqwest::Client, url: &str, wait: f64) -> anyhow::Result<Status> {
    let resp = client.get(format!("{url}?wait={wait:.3}")).send().await?;
    let code = resp.status();
    let bytes = resp.bytes().await?;
    anyhow::ensure!(
        code.is_success(),
        "HTTP {code}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    Ok(serde_json::from_slice(&bytes)?)
}
