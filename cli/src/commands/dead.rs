//! `dead list | retry | delete`: the dead letters.

use reqwest::Method;
use serde::Deserialize;

use crate::args::{DeadCommand, Global};
use crate::client::{Client, urlencode};
use crate::error::{CliError, Outcome};
use crate::render::{emit, emit_json, show, table};

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

pub(super) async fn dead(global: &Global, command: DeadCommand) -> Result<Outcome, CliError> {
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
