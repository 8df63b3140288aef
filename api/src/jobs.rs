//! Job routes: submit (optionally waiting for the result), status (with long-poll), cancel.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::JobStatus;
use inferq_shared::job::{JobId, JobParameters, JobRequest};
use inferq_shared::model::ModelInfo;
use inferq_shared::model::valid_model_name;
use inferq_shared::payload::{self, JobHeader};
use inferq_shared::queue::{NewJob, Submitted};
use inferq_shared::webhook::{Webhook, WebhookRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::body::{JobBody, Submission, parse_json};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::JobTrace;
use crate::oip::wire::InferRequest;
use crate::record::JobRecord;
use crate::state::AppState;
use crate::status::{WaitQuery, read_record, wait_duration, wait_for_record};

use crate::error::AppResult;
pub(crate) use crate::submission::*;

/// What a binary submission's JSON header holds besides its inputs (read by
/// [`InferRequest`]).
#[derive(Deserialize)]
struct JobMeta {
    model: String,
    #[serde(default)]
    parameters: Option<JobParameters>,
    #[serde(default)]
    webhook: Option<WebhookRequest>,
}

/// A submission read and checked: its model, payload, parameters and webhook.
type ReadSubmission = (
    Arc<ModelInfo>,
    Vec<u8>,
    Option<JobParameters>,
    Option<Webhook>,
);

pub(crate) async fn find_model(state: &AppState, name: &str) -> AppResult<Arc<ModelInfo>> {
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
async fn read_submission(state: &AppState, body: &JobBody) -> AppResult<ReadSubmission> {
    let Some(n) = body.json_len else {
        let req: JobRequest<'_> = parse_json(&body.bytes)?;
        let model = find_model(state, &req.model).await?;
        let payload = model.encode_request(&req, &state.config.fetch_allow)?;
        let hook = webhook(state, req.webhook.as_ref())?;
        return Ok((model, payload, req.parameters, hook));
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
        urls: Vec::new(),
    };
    model.validate_header(&header)?;
    let hook = webhook(state, meta.webhook.as_ref())?;
    Ok((
        model,
        payload::encode_job(&header, &data),
        meta.parameters,
        hook,
    ))
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
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1,
         max_length = 255, pattern = "^[!-~]+$",
         description = "The same key with the same body within INFERQ_IDEMPOTENCY_TTL_SECS \
            answers with the job it first created (`Idempotent-Replayed: true`); with another \
            body it is `422 idempotency_key_reused`"),
        crate::openapi::TraceparentHeader,
    ),
    request_body(
        description = "A JSON job (a model job, or a pipeline job with base64 audio); \
            (application/octet-stream) the binary tensor framing: the JSON part with \
            `parameters.binary_data_size` in place of each input's `data`, then the inputs' raw \
            little-endian bytes in input order; or (multipart/form-data) a pipeline job with its \
            file",
        content(
            (crate::openapi::SubmitJsonDoc = "application/json"),
            ("application/octet-stream"),
            (crate::pipelines::PipelineForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "The job finished within `?wait`: its record",
         body = JobRecord, headers(("Location" = String, description = "`/status/<id>`"),
                                   ("Idempotent-Replayed" = bool))),
        (status = 202, description = "Queued (or, replayed by its idempotency key, the job \
            first created)", body = JobAccepted,
         headers(("Location" = String, description = "`/status/<id>`"),
                 ("Idempotent-Replayed" = bool,
                  description = "`true` when an Idempotency-Key answered with an earlier job")),
         links(
            ("JobStatus" = (operation_id = "job_status", parameters(("id" = "$response.body#/id")),
                            description = "The job's status and result")),
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")),
                         description = "The same, at `/jobs/<id>`")),
            ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")),
                            description = "Cancel the job")),
         )),
        (status = 400, description = "`malformed_json`, `invalid_request`", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`: the body, or a pipeline's upload, \
            is over its limit", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
        (status = 422, description = "The request does not fit the model (`unknown_model`, \
            `shape_mismatch`, …), `invalid_parameter`, `idempotency_key_reused`, `invalid_url` / \
            `url_not_allowed` (an input's, the audio's or the webhook's `url`); or the \
            pipeline (`unknown_pipeline`, `invalid_parameter`, `invalid_audio`: the file's \
            header shows it cannot be decoded)", body = ErrorResponse),
        (status = 429, description = "`overloaded`: the model's queue is full",
         body = ErrorResponse, headers(("Retry-After" = u32))),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
    JobTrace(trace): JobTrace,
    body: Submission,
) -> AppResult<Response> {
    let wait = wait_duration(&state, query)?;
    let key = idempotency_key(&headers)?;
    let body = match body {
        Submission::Model(body) => body,
        Submission::Pipeline(upload) => {
            if key.is_some() {
                return Err(ApiError::InvalidRequest(
                    "Idempotency-Key is not supported for pipeline jobs yet".into(),
                ));
            }
            return submit_pipeline(&state, &caller, upload, wait).await;
        }
    };
    let (model, payload, parameters, hook) = read_submission(&state, &body).await?;
    let mut options = JobOptions::of(parameters.as_ref())?;
    // A job with a webhook runs, so that its events happen (its result is still cached).
    let lookup = options.cache && hook.is_none();
    options.cache = lookup;

    let mut id = JobId::new();
    let cache = match from_cache(&state, &caller, id, &model, &payload, options).await? {
        Ok(()) => {
            let record = read_record(&state, &caller, id).await?;
            let url = format!("/status/{id}");
            let status = if wait.is_zero() {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            let location = [(header::LOCATION, url.clone())];
            return Ok(if wait.is_zero() {
                let accepted = JobAccepted {
                    id,
                    status: record.status,
                    status_url: url,
                };
                (status, location, Json(accepted)).into_response()
            } else {
                (status, location, Json(record)).into_response()
            });
        }
        Err(cache) => cache,
    };
    let job = NewJob {
        id,
        model: &model.name,
        payload: &payload,
        deadline_ms: options.deadline_ms,
        result_ttl_secs: options.result_ttl_secs,
        idempotency: key.map(|k| (tenant_scoped(&caller, &k), request_hash(&body.bytes))),
        cache,
        due_ms: options.due_ms,
        trace,
        tenant: &caller.tenant,
        priority: options.priority,
        tenant_max_queued: caller.max_queued(&state.config),
        webhook: hook.as_ref(),
    };
    // Registered before the job exists, so its completion cannot slip past.
    let mut guard = (!wait.is_zero()).then(|| state.wait_for(id));
    let outcome = state.submitter().submit(&job).await?;
    let mut replayed = false;
    let mut status = JobStatus::Queued;
    match outcome {
        Submitted::Queued => crate::metrics::submitted(&model.name),
        Submitted::Scheduled => {
            crate::metrics::submitted(&model.name);
            status = JobStatus::Scheduled;
        }
        Submitted::Replayed(first) => {
            (id, replayed) = (first, true);
            guard = (!wait.is_zero()).then(|| state.wait_for(id));
        }
        other => return Err(refused(&state, &model.name, other)),
    }
    tracing::debug!(job_id = %id, model = %model.name, replayed, "job submitted");
    let url = format!("/status/{id}");
    let replay_header = (
        HeaderName::from_static(IDEMPOTENT_REPLAYED),
        HeaderValue::from_static(if replayed { "true" } else { "false" }),
    );
    if let Some(guard) = guard {
        let until = tokio::time::Instant::now() + wait;
        let record = wait_for_record(&state, &caller, &guard, id, until, false).await?;
        if record.status.is_terminal() {
            return Ok((
                [
                    (
                        header::LOCATION,
                        HeaderValue::try_from(url).map_err(internal)?,
                    ),
                    replay_header,
                ],
                Json(record),
            )
                .into_response());
        }
    }
    if replayed {
        status = match state.queue.record(id).await? {
            Some(r) => r.status,
            None => return Err(ApiError::JobNotFound(id.to_string())),
        };
    }
    Ok((
        StatusCode::ACCEPTED,
        [
            (
                header::LOCATION,
                HeaderValue::try_from(url.clone()).map_err(internal)?,
            ),
            replay_header,
        ],
        Json(JobAccepted {
            id,
            status,
            status_url: url,
        }),
    )
        .into_response())
}

/// A pipeline job (its upload checked and stored with it); answers as for a model job.
async fn submit_pipeline(
    state: &AppState,
    caller: &Principal,
    upload: crate::pipelines::PipelineUpload,
    wait: Duration,
) -> AppResult<Response> {
    let id = JobId::new();
    // Registered before the job exists, so its completion cannot slip past.
    let guard = (!wait.is_zero()).then(|| state.wait_for(id));
    crate::pipelines::submit(state, id, upload, caller).await?;
    tracing::debug!(job_id = %id, "pipeline job submitted");
    let url = format!("/status/{id}");
    let location = HeaderValue::try_from(url.clone()).map_err(internal)?;
    if let Some(guard) = guard {
        let until = tokio::time::Instant::now() + wait;
        let record = wait_for_record(state, caller, &guard, id, until, false).await?;
        if record.status.is_terminal() {
            return Ok(([(header::LOCATION, location)], Json(record)).into_response());
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(JobAccepted {
            id,
            status: JobStatus::Queued,
            status_url: url,
        }),
    )
        .into_response())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}
