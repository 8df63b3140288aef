//! The operator's overview: `workers` and `queues`.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use crate::args::Global;
use crate::client::Client;
use crate::error::{CliError, Outcome};
use crate::render::{duration, show, table};

#[derive(Debug, Deserialize)]
struct Workers {
    workers: Vec<Worker>,
}

#[derive(Debug, Deserialize)]
struct Worker {
    id: String,
    host: String,
    pid: u32,
    models: Vec<String>,
    threads: usize,
    busy: usize,
    jobs_succeeded: u64,
    jobs_failed: u64,
    started_at: String,
}

#[derive(Debug, Deserialize)]
struct Queues {
    queues: BTreeMap<String, QueueFigures>,
    dead_letters: u64,
    recent_failures: Vec<Failure>,
}

#[derive(Debug, Deserialize)]
struct QueueFigures {
    depth: u64,
    running: u64,
    oldest_age_seconds: f64,
    completed_last_minute: u64,
    workers: usize,
}

#[derive(Debug, Deserialize)]
struct Failure {
    id: String,
    model: String,
    code: String,
    failed_at: String,
}

pub(super) async fn workers(global: &Global) -> Result<Outcome, CliError> {
    let raw = Client::new(global)?.call(Method::GET, "/workers").await?;
    show(global, &raw, |w: Workers| {
        if w.workers.is_empty() {
            return "no live workers\n".into();
        }
        let header = [
            "ID",
            "HOST",
            "PID",
            "MODELS",
            "BUSY",
            "SUCCEEDED",
            "FAILED",
            "STARTED",
        ]
        .map(String::from);
        let rows: Vec<[String; 8]> = w
            .workers
            .into_iter()
            .map(|w| {
                [
                    w.id,
                    w.host,
                    w.pid.to_string(),
                    w.models.join(","),
                    format!("{}/{}", w.busy, w.threads),
                    w.jobs_succeeded.to_string(),
                    w.jobs_failed.to_string(),
                    w.started_at,
                ]
            })
            .collect();
        table(&header, &rows)
    })
}

pub(super) async fn queues(global: &Global) -> Result<Outcome, CliError> {
    let raw = Client::new(global)?.call(Method::GET, "/queues").await?;
    show(global, &raw, |q: Queues| {
        let header = [
            "MODEL", "WAITING", "RUNNING", "OLDEST", "DONE/MIN", "WORKERS",
        ]
        .map(String::from);
        let rows: Vec<[String; 6]> = q
            .queues
            .into_iter()
            .map(|(model, f)| {
                [
                    model,
                    f.depth.to_string(),
                    f.running.to_string(),
                    if f.depth == 0 {
                        "-".into()
                    } else {
                        duration(Duration::from_secs_f64(f.oldest_age_seconds.max(0.0)))
                    },
                    f.completed_last_minute.to_string(),
                    f.workers.to_string(),
                ]
            })
            .collect();
        let mut out = if rows.is_empty() {
            "no models registered\n".to_owned()
        } else {
            table(&header, &rows)
        };
        out.push_str(&format!("\ndead letters: {}\n", q.dead_letters));
        if !q.recent_failures.is_empty() {
            out.push_str("recent failures:\n");
            for f in q.recent_failures.iter().take(10) {
                out.push_str(&format!(
                    "  {}  {}  {}  {}\n",
                    f.failed_at, f.model, f.id, f.code
                ));
            }
        }
        out
    })
}
