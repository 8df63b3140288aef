//! API key management, over HTTP (`POST /keys`, `GET /keys`, `DELETE /keys/<id>`, admin only)
//! and on the command line (`inferq-api keys create|list|revoke`, talking to Redis directly,
//! so the first key can be made before any key exists).

use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use inferq_shared::auth::{
    ApiKey, KeyInfo, Scope, Scopes, TenantLimits, valid_key_name, valid_tenant,
};
use inferq_shared::queue::Queue;
use inferq_shared::time::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::body::JobBody;
use crate::http::extract::ApiPath;
use crate::json::parse_json;
use crate::state::AppState;

/// `POST /keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// The tenant that owns what the key submits.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]+$")]
    tenant: String,
    /// At least one of `submit`, `read`, `admin`.
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// A label for listings: no control characters.
    #[serde(default)]
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    name: Option<String>,
    /// The tenant's most jobs waiting or running, for requests with this key (default:
    /// `INFERQ_TENANT_MAX_QUEUED`); 0 = no limit.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 1_000_000_000)]
    max_queued: Option<f64>,
    /// The tenant's submissions per second, for requests with this key (default:
    /// `INFERQ_TENANT_RATE`); 0 = no limit.
    #[serde(default)]
    #[schema(minimum = 0)]
    rate: Option<f64>,
    /// The tenant's burst of submissions (default: `INFERQ_TENANT_BURST`).
    #[serde(default)]
    #[schema(minimum = 1)]
    burst: Option<f64>,
}

/// The largest `max_queued` a key may set (0 means no limit).
const MAX_QUEUED_LIMIT: u64 = 1_000_000_000;

/// A JSON number that is a whole number from 0 to [`MAX_QUEUED_LIMIT`], as JSON Schema's `integer` allows it to be
/// spelled (`610` or `610.0`).
fn whole_number<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<f64>, D::Error> {
    let n = Option::<f64>::deserialize(de)?;
    match n {
        Some(v) if !(v >= 0.0 && v.fract() == 0.0 && v <= MAX_QUEUED_LIMIT as f64) => {
            Err(serde::de::Error::custom(format!(
                "max_queued must be a whole number from 0 to {MAX_QUEUED_LIMIT}"
            )))
        }
        n => Ok(n),
    }
}

/// A new key: the only time `key` is shown.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKey {
    /// The key itself; only its hash is stored, so it cannot be shown again.
    key: String,
    #[serde(flatten)]
    info: KeyInfo,
}

/// `GET /keys`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyList {
    keys: Vec<KeyInfo>,
}

/// `DELETE /keys/<id>`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevokedKey {
    id: String,
    /// Always true.
    revoked: bool,
}

/// Makes, stores and returns a key (the only place a key is made).
pub async fn create_key(
    queue: &Queue,
    tenant: &str,
    scopes: Scopes,
    name: &str,
    limits: TenantLimits,
) -> Result<(ApiKey, KeyInfo), ApiError> {
    if !valid_tenant(tenant) {
        return Err(ApiError::InvalidRequest(
            inferq_shared::auth::AuthError::InvalidTenant.to_string(),
        ));
    }
    if !valid_key_name(name) {
        return Err(ApiError::InvalidRequest(
            inferq_shared::auth::AuthError::InvalidName.to_string(),
        ));
    }
    if scopes.is_empty() {
        return Err(ApiError::InvalidRequest(
            inferq_shared::auth::AuthError::NoScope.to_string(),
        ));
    }
    limits
        .check()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let key = ApiKey::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let info = KeyInfo {
        id: key.id().unwrap_or_default().to_owned(),
        tenant: tenant.to_owned(),
        scopes,
        name: name.to_owned(),
        created_at: now_ms(),
        limits,
    };
    queue.store_api_key(&key, &info).await?;
    Ok((key, info))
}

/// Makes an API key for a tenant. The answer is the only time the key is shown.
#[utoipa::path(
    post, path = "/keys", operation_id = "create_key", tag = "keys",
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key", body = CreatedKey),
        (status = 400, description = "`malformed_json`, `invalid_request`", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    body: JobBody,
) -> AppResult<(StatusCode, Json<CreatedKey>)> {
    if body.json_len.is_some() {
        return Err(ApiError::UnsupportedMediaType);
    }
    let req: NewKey = parse_json(&body.bytes)?;
    let scopes: Scopes = req.scopes.into_iter().collect();
    let name = req.name.unwrap_or_default();
    let limits = TenantLimits {
        // Checked whole and non-negative by `whole_number`.
        max_queued: req.max_queued.map(|n| n as u64),
        rate: req.rate,
        burst: req.burst,
    };
    let (key, info) = create_key(&state.queue, &req.tenant, scopes, &name, limits).await?;
    tracing::info!(key_id = %info.id, tenant = %info.tenant, scopes = %info.scopes, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.expose().to_owned(),
            info,
        }),
    ))
}

/// Every stored key (never the keys themselves), oldest first.
#[utoipa::path(
    get, path = "/keys", operation_id = "list_keys", tag = "keys",
    responses(
        (status = 200, description = "The keys", body = KeyList,
         links(("RevokeKey" = (operation_id = "revoke_key",
                               parameters(("id" = "$response.body#/keys/0/id")))))),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn list(State(state): State<Arc<AppState>>) -> AppResult<Json<KeyList>> {
    Ok(Json(KeyList {
        keys: state.queue.list_api_keys().await?,
    }))
}

/// Revokes a key: the next request that presents it gets `401`.
#[utoipa::path(
    delete, path = "/keys/{id}", operation_id = "revoke_key", tag = "keys",
    params(("id" = String, Path, description = "The key's id, as `GET /keys` lists it")),
    responses(
        (status = 200, description = "Revoked", body = RevokedKey),
        (status = 400, description = "`invalid_request`", body = ErrorResponse),
        (status = 404, description = "`key_not_found`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> AppResult<Json<RevokedKey>> {
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_ok || !state.queue.revoke_api_key(&id).await? {
        return Err(ApiError::KeyNotFound(id.chars().take(64).collect()));
    }
    tracing::info!(key_id = %id, "API key revoked");
    Ok(Json(RevokedKey { id, revoked: true }))
}

/// `inferq-api keys …`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum KeysCommand {
    /// Make a key and print it (the only time it is shown; only its hash is stored).
    Create {
        /// The tenant that owns what the key submits.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: submit, read, admin (admin implies the others and sees every
        /// tenant).
        #[arg(long)]
        scopes: Scopes,
        /// A label for listings.
        #[arg(long, default_value = "")]
        name: String,
        /// The tenant's most jobs waiting or running, for requests with this key (default:
        /// INFERQ_TENANT_MAX_QUEUED); 0 = no limit; at most 1,000,000,000.
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_QUEUED_LIMIT))]
        max_queued: Option<u64>,
        /// The tenant's submissions per second, for requests with this key (default:
        /// INFERQ_TENANT_RATE); 0 = no limit.
        #[arg(long)]
        rate: Option<f64>,
        /// The tenant's burst of submissions (default: INFERQ_TENANT_BURST).
        #[arg(long)]
        burst: Option<f64>,
    },
    /// List the stored keys (id, tenant, scopes, name, creation time); never the keys.
    List,
    /// Revoke a key by its id.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
    },
}

/// `max_queued=…,rate=…,burst=…` for what the key sets; `-` for none.
fn limits_text(l: &TenantLimits) -> String {
    let parts: Vec<String> = [
        l.max_queued.map(|n| format!("max_queued={n}")),
        l.rate.map(|r| format!("rate={r}")),
        l.burst.map(|b| format!("burst={b}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(",")
    }
}

/// Runs a `keys` subcommand against the configured Redis and prints its outcome.
pub async fn run_command(config: &crate::config::Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let queue = Queue::connect(&config.redis, std::time::Duration::ZERO)
        .await
        .context("configuring the Redis connection")?;
    match cmd {
        KeysCommand::Create {
            tenant,
            scopes,
            name,
            max_queued,
            rate,
            burst,
        } => {
            let limits = TenantLimits {
                max_queued,
                rate,
                burst,
            };
            let (key, info) = create_key(&queue, &tenant, scopes, &name, limits)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", key.expose());
            eprintln!(
                "created key {} for tenant '{}' with scopes {}; it is shown only this once",
                info.id, info.tenant, info.scopes
            );
        }
        KeysCommand::List => {
            let keys = queue.list_api_keys().await.context("reading the keys")?;
            println!(
                "{:<16}  {:<20}  {:<18}  {:<24}  {:<24}  NAME",
                "ID", "TENANT", "SCOPES", "CREATED", "LIMITS"
            );
            for k in keys {
                println!(
                    "{:<16}  {:<20}  {:<18}  {:<24}  {:<24}  {}",
                    k.id,
                    k.tenant,
                    k.scopes.to_string(),
                    inferq_shared::time::rfc3339_ms(k.created_at),
                    limits_text(&k.limits),
                    k.name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if !queue
                .revoke_api_key(&id)
                .await
                .context("revoking the key")?
            {
                anyhow::bail!("no API key with id '{id}'");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}
