//! `/v1/batches`: start a batch from an uploaded file of `/v1/embeddings` requests, read it
//! (its status and `request_counts` come from its jobs, see `batch_progress`), cancel it,
//! list them. A batch belongs to the key's tenant; another tenant's id answers as unknown.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use inferq_shared::pipeline::EMBEDDING_MODEL;
use inferq_shared::queue::batches::{NewBatch, StoredBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::batch_input::{self, BatchErrorItem, BatchRecord, EMBEDDINGS_ENDPOINT};
use super::batch_pack;
use super::batch_progress::{self, Counts, is_final};
use super::files::{BATCH, owned_file};
use super::{
    KEEP_SECS, LIST, ListQuery, OpenAiPath, OpenAiQuery, new_id, now_secs, page, parse, read_body,
    valid_id,
};
use crate::caller::Principal;
use crate::error::{ApiError, OpenAiError, OpenAiErrorBody, OpenAiResult};
use crate::state::AppState;

const BATCH_PREFIX: &str = "batch_";

/// The one completion window.
const WINDOW: &str = "24h";
const WINDOW_SECS: u64 = 24 * 3600;

/// `POST /v1/batches`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateBatch {
    /// A file uploaded with `purpose=batch`: JSON Lines of `{"custom_id", "method": "POST",
    /// "url": "/v1/embeddings", "body": <embeddings request>}`.
    input_file_id: String,
    /// `/v1/embeddings`.
    endpoint: String,
    /// `24h`.
    completion_window: String,
    /// Up to 16 string pairs (keys up to 64 characters, values up to 512).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

/// OpenAI's batch object.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchObject {
    id: String,
    /// `batch`.
    object: &'static str,
    endpoint: String,
    model: &'static str,
    errors: Option<BatchErrors>,
    input_file_id: String,
    completion_window: String,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `cancelling`,
    /// `cancelled` or `expired`.
    status: String,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    /// Unix seconds, as are the other times.
    created_at: u64,
    in_progress_at: Option<u64>,
    expires_at: Option<u64>,
    finalizing_at: Option<u64>,
    completed_at: Option<u64>,
    failed_at: Option<u64>,
    expired_at: Option<u64>,
    cancelling_at: Option<u64>,
    cancelled_at: Option<u64>,
    request_counts: RequestCounts,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    /// Once final: the tokens of the succeeded requests.
    usage: Option<BatchUsage>,
}

page!(BatchList, BatchObject, "batches");

/// `{"object": "list", "data": [<error>]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchErrors {
    object: &'static str,
    data: Vec<BatchErrorItem>,
}

/// Requests in all, succeeded, and failed (refused lines, failed jobs, and, in a cancelled or
/// expired batch, those that never ran).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RequestCounts {
    total: u64,
    completed: u64,
    failed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchUsage {
    input_tokens: u64,
    input_tokens_details: Value,
    output_tokens: u64,
    output_tokens_details: Value,
    total_tokens: u64,
}

fn view(batch: StoredBatch, counts: Counts) -> OpenAiResult<BatchObject> {
    let record = batch_progress::record(&batch)?;
    let (total, completed, failed) = counts;
    let usage = (is_final(&batch.status) && batch.status != "failed").then(|| {
        let tokens = batch.tokens.unwrap_or(0);
        BatchUsage {
            input_tokens: tokens,
            input_tokens_details: serde_json::json!({"cached_tokens": 0}),
            output_tokens: 0,
            output_tokens_details: serde_json::json!({"reasoning_tokens": 0}),
            total_tokens: tokens,
        }
    });
    Ok(BatchObject {
        id: batch.id,
        object: "batch",
        endpoint: record.endpoint,
        model: EMBEDDING_MODEL,
        errors: record.errors.map(|data| BatchErrors { object: LIST, data }),
        input_file_id: record.input_file_id,
        completion_window: record.completion_window,
        status: batch.status,
        output_file_id: batch.output_file_id,
        error_file_id: batch.error_file_id,
        created_at: record.created_at,
        in_progress_at: record.in_progress_at,
        expires_at: Some(record.expires_at),
        finalizing_at: batch.finalizing_at,
        completed_at: batch.completed_at,
        failed_at: batch.failed_at,
        expired_at: batch.expired_at,
        cancelling_at: batch.cancelling_at,
        cancelled_at: batch.cancelled_at,
        request_counts: RequestCounts {
            total,
            completed,
            failed,
        },
        metadata: record.metadata,
        usage,
    })
}

fn check_metadata(metadata: Option<&Map<String, Value>>) -> OpenAiResult<()> {
    let Some(m) = metadata else { return Ok(()) };
    let bad = |m: &str| OpenAiError::invalid(m, Some("metadata"));
    if m.len() > 16 {
        return Err(bad("metadata holds at most 16 pairs"));
    }
    for (k, v) in m {
        let Some(v) = v.as_str() else {
            return Err(bad("metadata values must be strings"));
        };
        if k.chars().count() > 64 || v.chars().count() > 512 {
            return Err(bad("metadata keys hold at most 64 characters, values 512"));
        }
    }
    Ok(())
}

/// Starts a batch: the request lines of the input file are packed into jobs (a malformed line
/// fails only its request); the batch runs as its jobs do.
#[utoipa::path(
    post, path = "/v1/batches", operation_id = "openai_create_batch", tag = "openai",
    request_body(content = CreateBatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The batch, `in_progress` (or `failed` when its file \
            holds no request)", body = BatchObject),
        (status = 400, description = "`invalid_request_error`: an endpoint other than \
            `/v1/embeddings`, a window other than `24h`, bad metadata, a file not for batches",
         body = OpenAiErrorBody),
        (status = 404, description = "No such input file", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
    ),
)]
pub(crate) async fn create_batch(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    body: Result<Bytes, BytesRejection>,
) -> OpenAiResult<Json<BatchObject>> {
    let body = read_body(body, &state)?;
    let req: CreateBatch = parse(&body)?;
    if req.endpoint != EMBEDDINGS_ENDPOINT {
        return Err(OpenAiError::invalid(
            format!("inferq runs batches of {EMBEDDINGS_ENDPOINT} only"),
            Some("endpoint"),
        )
        .with_code("unsupported_endpoint"));
    }
    if req.completion_window != WINDOW {
        return Err(OpenAiError::invalid(
            "completion_window must be '24h'",
            Some("completion_window"),
        ));
    }
    check_metadata(req.metadata.as_ref())?;
    let file = owned_file(&state, &caller, &req.input_file_id).await?;
    if file.purpose != BATCH {
        return Err(OpenAiError::invalid(
            "the input file must be uploaded with purpose 'batch'",
            Some("input_file_id"),
        ));
    }
    let content = state
        .queue
        .file_content(&file.id)
        .await
        .map_err(ApiError::from)?
        .unwrap_or_default();
    let now = now_secs();
    let mut record = BatchRecord {
        input_file_id: file.id,
        endpoint: req.endpoint,
        completion_window: req.completion_window,
        metadata: req.metadata,
        created_at: now,
        in_progress_at: None,
        expires_at: now + WINDOW_SECS,
        errors: None,
    };
    let (status, requests) = match batch_input::read_lines(&content) {
        Ok(lines) => {
            let requests = batch_pack::submit(&state.desk(&caller), lines).await;
            record.in_progress_at = Some(now_secs());
            ("in_progress", requests)
        }
        Err(e) => {
            record.errors = Some(vec![e]);
            ("failed", Vec::new())
        }
    };
    let id = new_id(BATCH_PREFIX);
    let (record_json, requests_json) = (encode(&record)?, encode(&requests)?);
    let new = NewBatch {
        id: &id,
        tenant: &caller.tenant,
        status,
        record: &record_json,
        requests: &requests_json,
        created_at: now,
        ttl: Duration::from_secs(KEEP_SECS),
    };
    state
        .queue
        .create_batch(&new)
        .await
        .map_err(ApiError::from)?;
    let stored = owned_batch(&state, &caller, &id).await?;
    let (batch, counts) = batch_progress::refresh(&state, stored).await?;
    Ok(Json(view(batch, counts)?))
}

/// JSON of a stored part, with errors in OpenAI's shape.
fn encode<T: Serialize>(v: &T) -> OpenAiResult<String> {
    serde_json::to_string(v).map_err(|e| OpenAiError::internal(format!("encoding a batch: {e}")))
}

/// The caller's batch `id`, or `404`.
async fn owned_batch(state: &AppState, caller: &Principal, id: &str) -> OpenAiResult<StoredBatch> {
    let missing = || {
        OpenAiError::not_found(format!(
            "No such Batch object: {}",
            id.chars().take(64).collect::<String>()
        ))
    };
    if !valid_id(id, BATCH_PREFIX) {
        return Err(missing());
    }
    state
        .queue
        .batch(id)
        .await
        .map_err(ApiError::from)?
        .filter(|b| b.tenant == caller.tenant)
        .ok_or_else(missing)
}

/// One batch, as it stands.
#[utoipa::path(
    get, path = "/v1/batches/{batch_id}", operation_id = "openai_retrieve_batch", tag = "openai",
    params(("batch_id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = BatchObject),
        (status = 404, description = "No such batch (or another tenant's)", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn retrieve_batch(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OpenAiPath(id): OpenAiPath<String>,
) -> OpenAiResult<Json<BatchObject>> {
    let stored = owned_batch(&state, &caller, &id).await?;
    let (batch, counts) = batch_progress::refresh(&state, stored).await?;
    Ok(Json(view(batch, counts)?))
}

/// Cancels a batch: its requests still waiting or running are cancelled; what finished
/// stays, in its output file. `cancelling`, then `cancelled` once every request is final.
#[utoipa::path(
    post, path = "/v1/batches/{batch_id}/cancel", operation_id = "openai_cancel_batch",
    tag = "openai",
    params(("batch_id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch, `cancelling` or `cancelled`", body = BatchObject),
        (status = 400, description = "The batch is already completed, failed or expired",
         body = OpenAiErrorBody),
        (status = 404, description = "No such batch (or another tenant's)", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn cancel_batch(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OpenAiPath(id): OpenAiPath<String>,
) -> OpenAiResult<Json<BatchObject>> {
    let stored = owned_batch(&state, &caller, &id).await?;
    let status = state
        .queue
        .cancel_batch(&stored.id)
        .await
        .map_err(ApiError::from)?
        .unwrap_or_default();
    if matches!(status.as_str(), "completed" | "failed" | "expired") {
        return Err(OpenAiError::invalid(
            format!("Cannot cancel a batch with status '{status}'."),
            None,
        ));
    }
    let stored = owned_batch(&state, &caller, &id).await?;
    let (batch, counts) = batch_progress::refresh(&state, stored).await?;
    Ok(Json(view(batch, counts)?))
}

/// The caller's tenant's batches, newest first.
#[utoipa::path(
    get, path = "/v1/batches", operation_id = "openai_list_batches", tag = "openai",
    params(
        ("after" = Option<String>, Query, nullable = false, description = "A batch id: the page starts after it"),
        ("limit" = Option<i64>, Query, nullable = false, minimum = 1, maximum = 100,
         description = "Most batches in the page (default 20)"),
    ),
    responses(
        (status = 200, description = "A page of batches", body = BatchList),
        (status = 400, description = "`invalid_request_error`: a bad `limit`", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn list_batches(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OpenAiQuery(q): OpenAiQuery<ListQuery>,
) -> OpenAiResult<Json<BatchList>> {
    let limit = q.limit(20, 100)?;
    let (stored, has_more) = state
        .queue
        .list_batches(&caller.tenant, q.after.as_deref(), limit)
        .await
        .map_err(ApiError::from)?;
    let mut batches = Vec::with_capacity(stored.len());
    for b in stored {
        let (batch, counts) = batch_progress::refresh(&state, b).await?;
        batches.push(view(batch, counts)?);
    }
    Ok(Json(BatchList::new(batches, has_more)))
}
