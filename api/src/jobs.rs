//! Job routes: submit (optionally waiting for the result), status (with long-poll), cancel.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::JobStatus;
use inferq_shared::job::{JobId, JobParameters, JobRequest};
use inferq_shared::model::ModelInfo;
use inferq_shared::model::valid_model_name;
use inferq_shared::payload::{self, JobHeader};
use inferq_shared::queue::{Cancelled, Retention, StoredJob, Submitted};
use inferq_shared::time::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body::{JobBody, parse_json};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::ApiPath;
use crate::oip::wire::InferRequest;
use crate::record::JobRecord;
use crate::state::{AppState, WaitGuard};

use crate::error::AppResult;

/// What a binary submission's JSON header holds besides its inputs (read by
/// [`InferRequest`]).
#[derive(Deserialize)]
struct JobMeta {
    model: String,
    #[serde(default)]
    parameters: Option<JobParameters>,
}

async fn find_model(state: &AppState, name: &str) -> AppResult<Arc<ModelInfo>> {
    let model = if valid_model_name(name) {
        state.model(name).await?
    } else {
        None
    };
    model.ok_or_else(|| ApiError::UnknownModel {
        name: name.chars().take(128).collect(),
        available: state.cached_model_names().join(", "),
    })
}

/// Reads a submission, JSON or binary-framed, into its model, the job payload and its
/// parameters: validated and converted to the internal binary form in one pass over the data.
async fn read_submission(
    state: &AppState,
    body: &JobBody,
) -> AppResult<(Arc<ModelInfo>, Vec<u8>, Option<JobParameters>)> {
    let Some(n) = body.json_len else {
        let req: JobRequest<'_> = parse_json(&body.bytes)?;
        let model = find_model(state, &req.model).await?;
        let payload = model.encode_request(&req)?;
        return Ok((model, payload, req.parameters));
    };
    let (head, binary) = body.bytes.split_at(n);
    let meta: JobMeta = parse_json(head)?;
    let req: InferRequest<'_> = parse_json(head)?;
    let model = find_model(state, &meta.model).await?;
    let tensors = req
        .tensors(binary)
        .map_err(|e| ApiError::InvalidRequest(e.message().to_owned()))?;
    let (inputs, data): (Vec<_>, Vec<_>) = tensors.into_iter().unzip();
    let header = JobHeader {
        model: model.name.clone(),
        inputs,
        outputs: req
            .outputs
            .as_ref()
            .map(|o| o.iter().map(|o| o.name.clone()).collect()),
        parameters: meta.parameters.clone(),
    };
    model.validate_header(&header)?;
    Ok((model, payload::encode_job(&header, &data), meta.parameters))
}

/// The `202` answer to a submission.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobAccepted {
    id: JobId,
    /// Always `queued`.
    status: JobStatus,
    /// Where to read the job: `/status/<id>`.
    status_url: String,
}

/// Submits a job; with `?wait=`, answers with the record if the job finishes in time.
#[utoipa::path(
    post, path = "/jobs", operation_id = "submit_job", tag = "jobs",
    params(
        ("wait" = Option<f64>, Query, nullable = false, minimum = 0,
         description = "Seconds to wait for the job to finish (capped by INFERQ_MAX_WAIT_SECS)"),
        ("Inference-Header-Content-Length" = Option<u64>, Header, nullable = false,
         description = "With application/octet-stream: the length of the JSON part"),
    ),
    request_body(
        description = "A JSON job, or (application/octet-stream) the binary tensor framing: \
            the JSON part with `parameters.binary_data_size` in place of each input's `data`, \
            then the inputs' raw little-endian bytes in input order",
        content((crate::openapi::JobRequestDoc = "application/json"), ("application/octet-stream")),
    ),
    responses(
        (status = 200, description = "The job finished within `?wait`: its record",
         body = JobRecord, headers(("Location" = String, description = "`/status/<id>`"))),
        (status = 202, description = "Queued", body = JobAccepted,
         headers(("Location" = String, description = "`/status/<id>`")),
         links(
            ("JobStatus" = (operation_id = "job_status", parameters(("id" = "$response.body#/id")),
                            description = "The job's status and result")),
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")),
                         description = "The same, at `/jobs/<id>`")),
            ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")),
                            description = "Cancel the job")),
         )),
        (status = 400, description = "`malformed_json`, `invalid_request`", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
        (status = 422, description = "The request does not fit the model (`unknown_model`, \
            `shape_mismatch`, …)", body = ErrorResponse),
        (status = 429, description = "`overloaded`: the model's queue is full",
         body = ErrorResponse, headers(("Retry-After" = u32))),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: JobBody,
) -> AppResult<Response> {
    let wait = wait_duration(&state, query)?;
    let (model, payload, parameters) = read_submission(&state, &body).await?;
    let deadline = parameters.as_ref().and_then(|p| p.deadline_ms(now_ms()));

    let id = JobId::new();
    // Registered before the job exists, so its completion cannot slip past.
    let guard = (!wait.is_zero()).then(|| state.wait_for(id));
    match state
        .queue
        .submit(id, &model.name, &payload, state.config.max_queued, deadline)
        .await?
    {
        Submitted::Queued => crate::metrics::submitted(&model.name),
        Submitted::QueueFull => return Err(ApiError::Overloaded(model.name.clone())),
        // Retired after the model cache was filled.
        Submitted::UnknownModel => {
            return Err(ApiError::UnknownModel {
                name: model.name.clone(),
                available: state.cached_model_names().join(", "),
            });
        }
    }
    tracing::debug!(job_id = %id, model = %model.name, "job submitted");
    let url = format!("/status/{id}");
    if let Some(guard) = guard {
        let until = tokio::time::Instant::now() + wait;
        let record = wait_for_record(&state, &guard, id, until, false).await?;
        if record.status.is_terminal() {
            return Ok(([(header::LOCATION, url)], Json(record)).into_response());
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, url.clone())],
        Json(JobAccepted {
            id,
            status: JobStatus::Queued,
            status_url: url,
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct WaitQuery {
    /// Seconds to wait for the job to finish before answering.
    wait: Option<f64>,
}

/// `?wait=<seconds>`, capped at the configured maximum; zero when absent.
fn wait_duration(
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

fn parse_id(raw: &str) -> AppResult<JobId> {
    raw.parse()
        .map_err(|_| ApiError::InvalidJobId(raw.chars().take(64).collect()))
}

async fn read_stored(state: &AppState, id: JobId) -> AppResult<StoredJob> {
    state
        .queue
        .record(id)
        .await?
        .ok_or_else(|| ApiError::JobNotFound(id.to_string()))
}

async fn read_record(state: &AppState, id: JobId) -> AppResult<JobRecord> {
    read_stored(state, id).await?.try_into()
}

/// Reads the record once it is terminal or `until` passes, whichever is first. `read_first`
/// reads before the first wait (a job that may already be done); a job just submitted is not.
/// When the server starts shutting down, it answers at once with the record as it stands, so
/// the drain is not held up by long-polls.
async fn wait_for_record(
    state: &AppState,
    guard: &WaitGuard<'_>,
    id: JobId,
    until: tokio::time::Instant,
    read_first: bool,
) -> AppResult<JobRecord> {
    wait_for_job(state, guard, id, until, read_first)
        .await?
        .try_into()
}

/// [`wait_for_record`], returning the job as stored.
pub(crate) async fn wait_for_job(
    state: &AppState,
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
            let record = read_stored(state, id).await?;
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
    path: ApiPath<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<Response> {
    read_status(state, path, query, headers).await
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
    path: ApiPath<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<Response> {
    read_status(state, path, query, headers).await
}

async fn read_status(
    State(state): State<Arc<AppState>>,
    ApiPath(raw): ApiPath<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let id = parse_id(&raw)?;
    let wait = wait_duration(&state, query)?;
    let job = if wait.is_zero() {
        read_stored(&state, id).await?
    } else {
        let guard = state.wait_for(id);
        let until = tokio::time::Instant::now() + wait;
        wait_for_job(&state, &guard, id, until, true).await?
    };
    let binary = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"));
    if binary {
        crate::record::binary_response(job)
    } else {
        Ok(Json(JobRecord::try_from(job)?).into_response())
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
    ApiPath(raw): ApiPath<String>,
) -> AppResult<Json<JobRecord>> {
    let id = parse_id(&raw)?;
    let retention = Retention {
        result_ttl: Duration::from_secs(state.config.result_ttl_secs),
    };
    match state.queue.cancel(id, retention).await? {
        Cancelled::NotFound => Err(ApiError::JobNotFound(id.to_string())),
        Cancelled::AlreadyFinished(s) => Err(ApiError::AlreadyFinished(s)),
        Cancelled::Cancelled => read_record(&state, id).await.map(Json),
    }
}
