//! The operator's overview: `workers` and `queues`.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use crate::args::Global;
use crate::client::Client;
use crate::error::{CliError, Outcome};
use crate::render::{duration, known, show, table};

#[derive(Debug, Deserialize)]
struct Workers {
    workers: Vec<Worker>,
}

/// A live worker as `GET /workers` describes it. Every field but the id may be missing from
/// another version's answer: it is then shown as unknown (`?`), not a failure.
#[derive(Debug, Deserialize)]
struct Worker {
    id: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    busy: Option<usize>,
    #[serde(default)]
    jobs_succeeded: Option<u64>,
    #[serde(default)]
    jobs_failed: Option<u64>,
    #[serde(default)]
    started_at: Option<String>,
}

/// `GET /queues`; what another version's answer lacks is shown as unknown (`?`).
#[derive(Debug, Deserialize)]
struct Queues {
    queues: BTreeMap<String, QueueFigures>,
    #[serde(default)]
    dead_letters: Option<u64>,
    #[serde(default)]
    recent_failures: Vec<Failure>,
}

#[derive(Debug, Deserialize)]
struct QueueFigures {
    #[serde(default)]
    depth: Option<u64>,
    #[serde(default)]
    running: Option<u64>,
    #[serde(default)]
    oldest_age_seconds: Option<f64>,
    #[serde(default)]
    completed_last_minute: Option<u64>,
    #[serde(default)]
    workers: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct Failure {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    failed_at: Option<String>,
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
                    known(w.host),
                    known(w.pid),
                    known(w.models.map(|m| m.join(","))),
                    format!("{}/{}", known(w.busy), known(w.threads)),
                    known(w.jobs_succeeded),
                    known(w.jobs_failed),
                    known(w.started_at),
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
            "QUEUE", "WAITING", "RUNNING", "OLDEST", "DONE/MIN", "WORKERS",
        ]
        .map(String::from);
        let rows: Vec<[String; 6]> = q
            .queues
            .into_iter()
            .map(|(model, f)| {
                [
                    model,
                    known(f.depth),
                    known(f.running),
                    match (f.depth, f.oldest_age_seconds) {
                        (Some(0), _) => "-".into(),
                        (_, Some(age)) => duration(Duration::from_secs_f64(age.max(0.0))),
                        (_, None) => known::<u64>(None),
                    },
                    known(f.completed_last_minute),
                    known(f.workers),
                ]
            })
            .collect();
        let mut out = if rows.is_empty() {
            "no models registered\n".to_owned()
        } else {
            table(&header, &rows)
        };
        out.push_str(&format!("\ndead letters: {}\n", known(q.dead_letters)));
        if !q.recent_failures.is_empty() {
            out.push_str("recent failures:\n");
            for f in q.recent_failures.iter().take(10) {
                out.push_str(&format!(
                    "  {}  {}  {}  {}\n",
                    known(f.failed_at.as_deref()),
                    known(f.model.as_deref()),
                    known(f.id.as_deref()),
                    known(f.code.as_deref())
                ));
            }
        }
        out
    })
}
