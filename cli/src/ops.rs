//! The operator's commands: `workers`, `queues`, `dead list | retry | delete`.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use crate::args::{DeadCommand, Global, KeysCommand};
use crate::client::{Client, parse};
use crate::error::{CliError, Outcome};
use crate::render::{duration, emit, emit_json, table};

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

#[derive(Debug, Deserialize)]
struct DeadPage {
    dead_letters: Vec<DeadLetter>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeadLetter {
    id: Option<String>,
    dead_id: String,
    model: Option<String>,
    error: ErrorBody,
    attempts: Option<u32>,
    failed_at: Option<String>,
    /// Absent from servers older than tenants in dead letters.
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
}

#[derive(Debug, Deserialize)]
struct Requeued {
    id: String,
}

/// Prints `raw` as JSON, or its human form.
fn show<T: for<'de> Deserialize<'de>>(
    global: &Global,
    raw: &str,
    human: impl FnOnce(T) -> String,
) -> Result<Outcome, CliError> {
    if global.json {
        emit_json(raw)?;
    } else {
        emit(&human(parse(raw)?))?;
    }
    Ok(Outcome::Done)
}

pub(crate) async fn workers(global: &Global) -> Result<Outcome, CliError> {
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

pub(crate) async fn queues(global: &Global) -> Result<Outcome, CliError> {
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

pub(crate) async fn dead(global: &Global, command: DeadCommand) -> Result<Outcome, CliError> {
    let client = Client::new(global)?;
    match command {
        DeadCommand::List {
            limit,
            cursor,
            tenant,
        } => {
            let mut path = format!("/dead?limit={limit}");
            if let Some(c) = cursor {
                path.push_str(&format!("&cursor={}", urlencode(&c)));
            }
            if let Some(t) = &tenant {
                path.push_str(&format!("&tenant={}", urlencode(t)));
            }
            let raw = client.call(Method::GET, &path).await?;
            show(global, &raw, |p: DeadPage| {
                if p.dead_letters.is_empty() {
                    return "no dead letters\n".into();
                }
                let header = [
                    "JOB", "DEAD ID", "MODEL", "TENANT", "ERROR", "ATTEMPTS", "FAILED",
                ]
                .map(String::from);
                let dash = || "-".to_owned();
                let rows: Vec<[String; 7]> = p
                    .dead_letters
                    .into_iter()
                    .map(|d| {
                        [
                            d.id.unwrap_or_else(dash),
                            d.dead_id,
                            d.model.unwrap_or_else(dash),
                            d.tenant.unwrap_or_else(dash),
                            d.error.code,
                            d.attempts.map_or_else(dash, |a| a.to_string()),
                            d.failed_at.unwrap_or_else(dash),
                        ]
                    })
                    .collect();
                let mut out = table(&header, &rows);
                if let Some(next) = p.next_cursor {
                    let filter = tenant.map(|t| format!(" --tenant {t}")).unwrap_or_default();
                    out.push_str(&format!("more: inferq dead list --cursor {next}{filter}\n"));
                }
                out
            })
        }
        DeadCommand::Retry { id } => {
            let path = format!("/dead/{}/retry", urlencode(&id));
            let raw = client.call(Method::POST, &path).await?;
            show(global, &raw, |r: Requeued| {
                format!(
                    "job {id} queued again\n  follow it with: inferq wait {id}\n",
                    id = r.id
                )
            })
        }
        DeadCommand::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/dead/{}", urlencode(&id)))
                .await?;
            if global.json {
                emit_json(r#"{"deleted": true}"#)?;
            } else {
                emit(&format!("dead letter {id} deleted\n"))?;
            }
            Ok(Outcome::Done)
        }
    }
}

/// Percent-encodes everything but unreserved characters, for a path segment or query value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct Accepted {
    id: inferq_shared::JobId,
}

/// `inferq speech <file>`: the file goes as base64 in a JSON body.
pub(crate) async fn speech(
    global: &Global,
    file: &std::path::Path,
    parameters: Option<&str>,
    wait: bool,
) -> Result<Outcome, CliError> {
    use base64::Engine;
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let parameters: serde_json::Value = match parameters {
        None => serde_json::json!({}),
        Some(text) => match serde_json::from_str(text) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return Err(CliError::Usage(
                    "--parameters must be a JSON object, e.g. '{\"threshold\": 0.6}'".into(),
                ));
            }
        },
    };
    let body = serde_json::json!({
        "pipeline": "speech_segments",
        "audio": {"data": base64::engine::general_purpose::STANDARD.encode(&bytes)},
        "parameters": parameters,
    });
    let client = Client::new(global)?;
    let raw = client
        .post_json("/jobs", serde_json::to_vec(&body).unwrap_or_default())
        .await?;
    let accepted: Accepted = parse(&raw)?;
    if wait {
        let done = crate::progress::wait(&client, accepted.id).await?;
        return crate::commands::report(global, done);
    }
    if global.json {
        emit_json(&raw)?;
    } else {
        emit(&format!(
            "job {id} queued\n  follow it with: inferq wait {id}\n",
            id = accepted.id
        ))?;
    }
    Ok(Outcome::Done)
}

#[derive(Debug, Deserialize)]
struct KeyList {
    keys: Vec<KeyInfo>,
}

#[derive(Debug, Deserialize)]
struct KeyInfo {
    id: String,
    tenant: String,
    scopes: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    /// Epoch milliseconds (or an RFC 3339 string).
    #[serde(default)]
    created_at: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct NewKey {
    key: String,
    id: String,
    tenant: String,
    scopes: Vec<String>,
}

/// `inferq keys create | list | revoke` (admin endpoints).
pub(crate) async fn keys(global: &Global, command: KeysCommand) -> Result<Outcome, CliError> {
    let client = Client::new(global)?;
    match command {
        KeysCommand::Create {
            tenant,
            scopes,
            name,
            max_queued,
            rate,
            burst,
        } => {
            let mut body = serde_json::json!({"tenant": tenant, "scopes": scopes});
            if let Some(n) = name {
                body["name"] = serde_json::Value::String(n);
            }
            if let Some(n) = max_queued {
                body["max_queued"] = n.into();
            }
            if let Some(r) = rate {
                body["rate"] = r.into();
            }
            if let Some(b) = burst {
                body["burst"] = b.into();
            }
            let raw = client
                .post_json("/keys", serde_json::to_vec(&body).unwrap_or_default())
                .await?;
            show(global, &raw, |k: NewKey| {
                format!(
                    "{}\n  id {}, tenant {}, scopes {}\n  the key is shown only this once: store it now\n",
                    k.key,
                    k.id,
                    k.tenant,
                    k.scopes.join(",")
                )
            })
        }
        KeysCommand::List => {
            let raw = client.call(Method::GET, "/keys").await?;
            show(global, &raw, |l: KeyList| {
                if l.keys.is_empty() {
                    return "no keys\n".into();
                }
                let header = ["ID", "TENANT", "SCOPES", "NAME", "CREATED"].map(String::from);
                let rows: Vec<[String; 5]> = l
                    .keys
                    .into_iter()
                    .map(|k| {
                        [
                            k.id,
                            k.tenant,
                            k.scopes.join(","),
                            k.name.unwrap_or_else(|| "-".into()),
                            match k.created_at {
                                Some(serde_json::Value::Number(n)) => n
                                    .as_u64()
                                    .map_or_else(|| n.to_string(), inferq_shared::time::rfc3339_ms),
                                Some(serde_json::Value::String(s)) => s,
                                _ => "-".into(),
                            },
                        ]
                    })
                    .collect();
                table(&header, &rows)
            })
        }
        KeysCommand::Revoke { id } => {
            let raw = client
                .call(Method::DELETE, &format!("/keys/{}", urlencode(&id)))
                .await?;
            if global.json {
                emit_json(&raw)?;
            } else {
                emit(&format!("key {id} revoked\n"))?;
            }
            Ok(Outcome::Done)
        }
    }
}
