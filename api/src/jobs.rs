//! Job routes: submit (optionally waiting for the result), status (with long-poll), cancel.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::job::{JobId, JobParameters, JobRequest};
use inferq_shared::model::ModelInfo;
use inferq_shared::model::valid_model_name;
use inferq_shared::payload::{self, JobHeader};
use inferq_shared::queue::{Cancelled, Retention, StoredJob, Submitted};
use inferq_shared::time::now_ms;
use serde::Deserialize;
use serde_json::json;

use crate::body::{JobBody, parse_json};
use crate::error::ApiError;
use crate::oip::wire::InferRequest;
use crate::record::JobRecord;
use crate::state::{AppState, WaitGuard};

type AppResult<T> = Result<T, ApiError>;

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
        Submitted::Queued => {}
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
        Json(json!({ "id": id, "status": "queued", "status_url": url })),
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

/// The record as JSON, or, when the client sends `Accept: application/octet-stream`, with its
/// outputs as binary tensors after the JSON (the binary tensor extension's framing).
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
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

pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
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
