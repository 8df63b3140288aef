//! `keys create | list | revoke`: API keys (admin endpoints).

use reqwest::Method;
use serde::Deserialize;

use crate::args::{Global, KeysCommand};
use crate::client::{Client, urlencode};
use crate::error::{CliError, Outcome};
use crate::render::{emit, emit_json, show, table};

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
pub(super) async fn keys(global: &Global, command: KeysCommand) -> Result<Outcome, CliError> {
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
