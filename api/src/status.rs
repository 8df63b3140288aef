//! Reading jobs: status (with long-poll, JSON or binary outputs), `GET /jobs/<id>`, and
//! cancellation; the tenant-scoped reads the other job routes share.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::JobStatus;
use inferq_shared::job::JobId;
use inferq_shared::queue::{Cancelled, Retention, StoredJob};
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::extract::ApiPath;
use crate::record::JobRecord;
use crate::state::{AppState, WaitGuard};

#[derive(Deserialize)]
pub(crate) struct WaitQuery {
    /// Seconds to wait for the job to finish before answering.
    wait: Option<f64>,
}

/// `?wait=<seconds>`, capped at the configured maximum; zero when absent.
pub(crate) fn wait_duration(
    state: &AppState,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> AppResult<Duration> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    match query.wait {
        None => Ok(Duration::ZERO),
        Some(w) if w.is_finite() && w >= 0.0 => Ok(Duration::from_secs_f64(
            w.min(state.config.max_wait_secs as f64),
        )),
        Some(_) => Err(ApiError::InvalidRequest(
            "wait must be a non-negative number of seconds".into(),
        )),
    }
}

pub(crate) fn parse_id(raw: &str) -> AppResult<JobId> {
    raw.parse()
        .map_err(|_| ApiError::InvalidJobId(raw.chars().take(64).collect()))
}

/// Reads a job the caller may see. Another tenant's job answers exactly as an unknown id
/// does, so ids cannot be probed for existence.
pub(crate) async fn read_stored(
    state: &AppState,
    caller: &Principal,
    id: JobId,
) -> AppResult<StoredJob> {
    state
        .queue
        .record(id)
        .await?
        .filter(|job| caller.may_see(&job.tenant))
        .ok_or_else(|| ApiError::JobNotFound(id.to_string()))
}

pub(crate) async fn read_record(
    state: &AppState,
    caller: &Principal,
    id: JobId,
) -> AppResult<JobRecord> {
    Ok(read_stored(state, caller, id).await?.try_into()?)
}

/// Reads the record once it is terminal or `until` passes, whichever is first. `read_first`
/// reads before the first wait (a job that may already be done); a job just submitted is not.
/// When the server starts shutting down, it answers at once with the record as it stands, so
/// the drain is not held up by long-polls.
pub(crate) async fn wait_for_record(
    state: &AppState,
    caller: &Principal,
    guard: &WaitGuard<'_>,
    id: JobId,
    until: tokio::time::Instant,
    read_first: bool,
) -> AppResult<JobRecord> {
    Ok(wait_for_job(state, caller, guard, id, until, read_first)
        .await?
        .try_into()?)
}

/// [`wait_for_record`], returning the job as stored.
pub(crate) async fn wait_for_job(
    state: &AppState,
    caller: &Principal,
    guard: &WaitGuard<'_>,
    id: JobId,
    until: tokio::time::Instant,
    mut read_first: bool,
) -> AppResult<StoredJob> {
    loop {
        let notified = guard.signal.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = tokio::time::Instant::now();
        let stopping = state.is_shutting_down();
        if read_first || now >= until || guard.signal.fired() || stopping {
            let record = read_stored(state, caller, id).await?;
            if record.status.is_terminal() || now >= until || stopping {
                return Ok(record);
            }
        }
        read_first = true;
        // Events arrive over pub/sub; the periodic re-read only covers events lost while the
        // subscription was reconnecting.
        let slice = until
            .saturating_duration_since(now)
            .min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::timeout(slice, notified) => {}
            () = state.shutting_down() => {}
        }
    }
}

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
    let wait = wait_duration(&state, query)?;
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
        crate::record::binary_response(job)
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
