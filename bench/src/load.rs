//! The HTTP load generator: C concurrent keep-alive clients share N jobs; each submits one job,
//! long-polls its status until it is terminal, then takes the next (a closed loop), or in
//! submit-only mode just submits as fast as it can.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

/// How long one status request waits server-side for the job to finish.
const WAIT_SECS: u64 = 30;

/// Distinct request bodies, reused round-robin; enough that batches mix different inputs.
const BODIES: usize = 256;

#[derive(Debug, Clone)]
pub(crate) struct LoadConfig {
    pub api_url: String,
    pub model: String,
    pub input: String,
    pub width: usize,
    pub jobs: usize,
    pub concurrency: usize,
    pub submit_only: bool,
    /// Submit with `?wait=`, so a job that finishes in time needs no status request.
    pub submit_wait: bool,
    /// One synchronous OIP binary inference per job instead of the job API.
    pub oip_binary: bool,
    /// Submit-only through `POST /jobs/batch`, this many jobs per request.
    pub bulk: Option<usize>,
    /// A job accepted but not terminal this long after its submission counts as lost.
    pub job_timeout: Duration,
}

/// What the clients saw, merged.
#[derive(Debug, Default)]
pub(crate) struct LoadResult {
    /// `202 Accepted` answers.
    pub accepted: usize,
    /// Accepted jobs whose record reached `succeeded`.
    pub succeeded: usize,
    /// Accepted jobs that ended `failed` or `cancelled`.
    pub failed: usize,
    /// Submissions answered with anything but 202, and transport errors.
    pub rejected: usize,
    /// Status requests that failed (retried until the job timeout).
    pub status_errors: usize,
    /// Accepted jobs never seen terminal within the job timeout.
    pub lost: usize,
    /// Submit start to terminal record, per succeeded job.
    pub latencies: Vec<Duration>,
    /// From the first submission to the last 202.
    pub submit_wall: Duration,
    /// From the first submission to the last terminal record (or last 202 in submit-only mode).
    pub wall: Duration,
    /// A few distinct error messages, for the report.
    pub errors: Vec<String>,
}

impl LoadResult {
    fn merge(&mut self, other: Self) {
        self.accepted += other.accepted;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.rejected += other.rejected;
        self.status_errors += other.status_errors;
        self.lost += other.lost;
        self.latencies.extend(other.latencies);
        self.submit_wall = self.submit_wall.max(other.submit_wall);
        self.wall = self.wall.max(other.wall);
        for e in other.errors {
            self.note(e);
        }
    }

    fn note(&mut self, error: String) {
        if self.errors.len() < 5 && !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// The `q` quantile (0..=1) of the latencies, nearest rank.
    pub(crate) fn percentile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied()
    }
}

/// `n` deterministic pseudo-random values in [-1, 1) with four decimals (short JSON), from a
/// 64-bit LCG seeded by `seed`.
pub(crate) fn input_data(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

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

/// Drives the API until all `jobs` are submitted (and, unless submit-only, terminal or timed out).
pub(crate) async fn run(cfg: LoadConfig) -> anyhow::Result<LoadResult> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(cfg.concurrency)
        .timeout(Duration::from_secs(WAIT_SECS + 10))
        .build()
        .context("building the HTTP client")?;
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..BODIES.min(cfg.jobs.max(1)))
            .map(|i| {
                json!({
                    "model": cfg.model,
                    "inputs": [{
                        "name": cfg.input,
                        "shape": [1, cfg.width],
                        "datatype": "FP32",
                        "data": input_data(i as u64, cfg.width),
                    }],
                })
                .to_string()
            })
            .collect(),
    );
    if cfg.oip_binary {
        return run_oip(client, cfg).await;
    }
    if let Some(per) = cfg.bulk {
        return run_bulk(client, cfg, bodies, per).await;
    }
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

/// Bulk submission: each client takes `per` job numbers at a time and submits them in one
/// `POST /jobs/batch`, counting the items answered with an id as accepted.
async fn run_bulk(
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
        let id = match submit(client, &submit_url, &bodies[i % bodies.len()]).await {
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

/// The OIP variant: each client sends `POST /v2/models/<m>/infer` with a binary input and
/// binary outputs and counts a `200` carrying `Inference-Header-Content-Length` as success.
async fn run_oip(client: reqwest::Client, cfg: LoadConfig) -> anyhow::Result<LoadResult> {
    let bodies: Arc<Vec<(Vec<u8>, usize)>> = Arc::new(
        (0..BODIES.min(cfg.jobs.max(1)))
            .map(|i| {
                let header = json!({
                    "inputs": [{
                        "name": cfg.input,
                        "shape": [1, cfg.width],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": cfg.width * 4},
                    }],
                    "parameters": {"binary_data_output": true},
                });
                let mut body = serde_json::to_vec(&header).expect("JSON");
                let n = body.len();
                for v in input_data(i as u64, cfg.width) {
                    body.extend_from_slice(&v.to_le_bytes());
                }
                (body, n)
            })
            .collect(),
    );
    let url = Arc::new(format!("{}/v2/models/{}/infer", cfg.api_url, cfg.model));
    let cfg = Arc::new(cfg);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..cfg.concurrency.max(1))
        .map(|_| {
            let (client, bodies, cfg, next, url) = (
                client.clone(),
                bodies.clone(),
                cfg.clone(),
                next.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                let mut out = LoadResult::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cfg.jobs {
                        return out;
                    }
                    let began = Instant::now();
                    let (body, n) = &bodies[i % bodies.len()];
                    let result = async {
                        let resp = client
                            .post(url.as_str())
                            .header("inference-header-content-length", *n)
                            .body(body.clone())
                            .send()
                            .await?;
                        let code = resp.status();
                        let binary = resp
                            .headers()
                            .contains_key("inference-header-content-length");
                        let bytes = resp.bytes().await?;
                        anyhow::ensure!(
                            code == reqwest::StatusCode::OK && binary,
                            "HTTP {code}: {}",
                            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                        );
                        Ok(())
                    }
                    .await;
                    out.accepted += 1;
                    match result {
                        Ok(()) => {
                            out.succeeded += 1;
                            out.latencies.push(began.elapsed());
                        }
                        Err(e) => {
                            out.failed += 1;
                            out.note(format!("infer: {e:#}"));
                        }
                    }
                    out.wall = start.elapsed();
                    out.submit_wall = out.wall;
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

enum Submitted {
    /// `202`: queued (or not finished within the submit's wait).
    Accepted(String),
    /// `200`: finished within the submit's wait; the record.
    Done(Status),
}

async fn submit(client: &reqwest::Client, url: &str, body: &str) -> anyhow::Result<Submitted> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let load = LoadResult {
            latencies: (1..=100).rev().map(Duration::from_millis).collect(),
            ..LoadResult::default()
        };
        assert_eq!(load.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(load.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(load.percentile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(LoadResult::default().percentile(0.5), None);
    }

    #[test]
    fn input_data_is_deterministic_and_bounded() {
        let a = input_data(7, 1000);
        assert_eq!(a, input_data(7, 1000));
        assert_ne!(a, input_data(8, 1000));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
