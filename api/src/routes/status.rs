//! Reading jobs: status (with long-poll, JSON or binary outputs: the record as
//! `inferq_shared::record` renders it), `GET /jobs/<id>`, and cancellation.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::JobStatus;
use inferq_shared::job::JobId;
use inferq_shared::payload;
use inferq_shared::queue::{Cancelled, Retention, StoredJob};
use inferq_shared::record::JobRecord;
use serde_json::value::RawValue;

use crate::caller::Principal;
use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::body::HEADER_LENGTH;
use crate::http::extract::{ApiPath, WaitQuery, parse_id, wait_duration};
use crate::oip::wire::render_outputs;
use crate::state::{AppState, read_record, read_stored, wait_for_job};

/// The job record as JSON, or with `Accept: application/octet-stream` its outputs as binary
/// tensors after the JSON; with `?wait=`, once the job is final or the wait is over.
#[utoipa::path(
    get, path = "/status/{id}", operation_id = "job_status", tag = "jobs",
    params(
        ("id" = JobId, Path, description = "The job id, as `POST /jobs` returned it"),
        ("wait" = Option<f64>, Query, nullable = false, minimum = 0,
         description = "Seconds to wait for the job to be final (capped by INFERQ_MAX_WAIT_SECS)"),
    ),
    responses(
        (status = 200, description = "The job record; with `Accept: application/octet-stream`, \
            the record's JSON (outputs with `parameters.binary_data_size`), then the outputs' bytes",
         content((JobRecord = "application/json"), ("application/octet-stream")),
         headers(("Inference-Header-Content-Length" = u64,
                  description = "Binary answers: the length of the JSON part"))),
        (status = 400, description = "`invalid_job_id`, `invalid_request` (bad `?wait`)",
         body = ErrorResponse),
        (status = 404, description = "`job_not_found`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn status(
    state: State<Arc<AppState>>,
    caller: Principal,
    path: ApiPath<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<Response> {
    read_status(state, caller, path, query, headers).await
}

/// [`status`], at `/jobs/<id>`.
#[utoipa::path(
    get, path = "/jobs/{id}", operation_id = "get_job", tag = "jobs",
    params(
        ("id" = JobId, Path, description = "The job id, as `POST /jobs` returned it"),
        ("wait" = Option<f64>, Query, nullable = false, minimum = 0,
         description = "Seconds to wait for the job to be final (capped by INFERQ_MAX_WAIT_SECS)"),
    ),
    responses(
        (status = 200, description = "As `GET /status/{id}`",
         content((JobRecord = "application/json"), ("application/octet-stream")),
         headers(("Inference-Header-Content-Length" = u64,
                  description = "Binary answers: the length of the JSON part"))),
        (status = 400, description = "`invalid_job_id`, `invalid_request` (bad `?wait`)",
         body = ErrorResponse),
        (status = 404, description = "`job_not_found`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn get_job(
    state: State<Arc<AppState>>,
    caller: Principal,
    path: ApiPath<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<Response> {
    read_status(state, caller, path, query, headers).await
}

async fn read_status(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    ApiPath(raw): ApiPath<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let id = parse_id(&raw)?;
    let wait = wait_duration(&state.config, query)?;
    let job = if wait.is_zero() {
        read_stored(&state, &caller, id).await?
    } else {
        let guard = state.wait_for(id);
        let until = tokio::time::Instant::now() + wait;
        wait_for_job(&state, &caller, &guard, id, until, true).await?
    };
    let binary = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"));
    let position = match (&job.status, &job.entry) {
        (JobStatus::Queued, Some(entry)) => Some(
            state
                .queue
                .position(&job.model, job.priority, entry)
                .await?,
        ),
        _ => None,
    };
    if binary && position.is_none() {
        binary_response(job)
    } else {
        Ok(Json(JobRecord::try_from(job)?.with_position(position)).into_response())
    }
}

/// Cancels a job: a queued job never runs, a running one ends `cancelled` (its result is
/// discarded). The record stays readable.
#[utoipa::path(
    delete, path = "/jobs/{id}", operation_id = "cancel_job", tag = "jobs",
    params(("id" = JobId, Path, description = "The job id")),
    responses(
        (status = 200, description = "Cancelled: the record", body = JobRecord),
        (status = 400, description = "`invalid_job_id`", body = ErrorResponse),
        (status = 404, description = "`job_not_found`", body = ErrorResponse),
        (status = 409, description = "`job_finished`: the job is already final", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    ApiPath(raw): ApiPath<String>,
) -> AppResult<Json<JobRecord>> {
    let id = parse_id(&raw)?;
    // A job's tenant never changes, so checking it before the cancellation is enough.
    let owner = state.queue.job_tenant(id).await?;
    if !owner.is_some_and(|t| caller.may_see(&t)) {
        return Err(ApiError::JobNotFound(id.to_string()));
    }
    let retention = Retention {
        result_ttl: Duration::from_secs(state.config.result_ttl_secs),
    };
    match state.queue.cancel(id, retention).await? {
        Cancelled::NotFound => Err(ApiError::JobNotFound(id.to_string())),
        Cancelled::AlreadyFinished(s) => Err(ApiError::AlreadyFinished(s)),
        Cancelled::Cancelled => read_record(&state, &caller, id).await.map(Json),
    }
}

/// The record with its outputs as binary tensors: the JSON record (each output with
/// `parameters.binary_data_size` instead of `data`) followed by the outputs' raw little-endian
/// bytes in `outputs` order, its length in `Inference-Header-Content-Length`. A record without
/// a binary result is plain JSON.
fn binary_response(mut job: StoredJob) -> Result<Response, ApiError> {
    let Some(bytes) = job.result.take_if(|r| payload::is_result_frame(r)) else {
        return Ok(Json(JobRecord::try_from(job)?).into_response());
    };
    let id = job.id;
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::Internal(format!("stored result of job {id} is unreadable: {e}"))
    };
    let (header, parts) = payload::decode_result(&bytes).map_err(|e| bad(&e))?;
    let (outputs, chunks) =
        render_outputs(header.outputs.into_iter().zip(parts).collect(), |_| true)
            .map_err(|e| bad(&e.message()))?;
    let result =
        serde_json::to_string(&serde_json::json!({ "outputs": outputs })).map_err(|e| bad(&e))?;
    let mut record = JobRecord::try_from(job)?;
    record.result = Some(RawValue::from_string(result).map_err(|e| bad(&e))?);
    let mut body = serde_json::to_vec(&record).map_err(|e| bad(&e))?;
    let json_len = body.len();
    body.extend_from_slice(&chunks);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_len),
            ),
        ],
        body,
    )
        .into_response())
}
