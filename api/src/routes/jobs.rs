//! `POST /jobs`: submits a model job (JSON or binary-framed) or a pipeline job, optionally
//! waiting for its result.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::JobStatus;
use inferq_shared::job::{JobId, JobParameters, JobRequest};
use inferq_shared::payload::{self, JobHeader};
use inferq_shared::queue::Submitted;
use inferq_shared::record::JobRecord;
use inferq_shared::webhook::WebhookRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::caller::Principal;
use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::body::Submission;
use crate::http::extract::{JobTrace, TraceparentHeader, WaitQuery, wait_duration};
use crate::json::parse_json;
use crate::oip::wire::InferRequest;
use crate::state::{AppState, read_record, wait_for_record};
use crate::submit::options::{IDEMPOTENT_REPLAYED, idempotency_key};
use crate::submit::pipeline::PipelineUpload;
use crate::submit::{Asks, Checked, Desk, Draft};

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

/// A binary-framed submission decoded: the JSON header's inputs joined with the binary
/// tensors after it, validated against the model and converted to the job payload.
async fn decode_binary<'m>(
    desk: &Desk<'_>,
    head: &[u8],
    binary: &[u8],
    meta: &'m JobMeta,
) -> AppResult<Draft<'m>> {
    let req: InferRequest<'_> = parse_json(head)?;
    let model = desk.find_model(&meta.model).await?;
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
    Ok(Draft {
        payload: payload::encode_job(&header, &data),
        model,
        parameters: meta.parameters.as_ref(),
        webhook: meta.webhook.as_ref(),
    })
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
        TraceparentHeader,
    ),
    request_body(
        description = "A JSON job (a model job, or a pipeline job: base64 audio, or texts); \
            (application/octet-stream) the binary tensor framing: the JSON part with \
            `parameters.binary_data_size` in place of each input's `data`, then the inputs' raw \
            little-endian bytes in input order; or (multipart/form-data) a pipeline job with its \
            file",
        content(
            (super::openapi::SubmitJsonDoc = "application/json"),
            ("application/octet-stream"),
            (crate::submit::pipeline::PipelineForm = "multipart/form-data"),
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
            header shows it cannot be decoded, `invalid_texts`: no texts, too many, an empty \
            one or a NUL)", body = ErrorResponse),
        (status = 429, description = "`overloaded`: the model's queue is full",
         body = ErrorResponse, headers(("Retry-After" = u32))),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`; or `not_replicated`: \
            fewer than INFERQ_REDIS_WAIT_REPLICAS replicas confirmed the submission in time (it \
            may exist: retry with the same Idempotency-Key)", body = ErrorResponse,
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
    let wait = wait_duration(&state.config, query)?;
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
    let desk = state.desk(&caller);
    let asks = Asks {
        idempotency: key.map(|k| (k, &body.bytes[..])),
        trace,
        cacheable: true,
    };
    let checked = match body.json_len {
        None => {
            let req: JobRequest<'_> = parse_json(&body.bytes)?;
            let draft = desk.decode(&req).await?;
            desk.check(draft, asks).await?
        }
        Some(n) => {
            let (head, binary) = body.bytes.split_at(n);
            let meta: JobMeta = parse_json(head)?;
            let draft = decode_binary(&desk, head, binary, &meta).await?;
            desk.check(draft, asks).await?
        }
    };
    let job = match checked {
        Checked::Job(job) => *job,
        Checked::Cached(id) => {
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
    };
    let (mut id, model) = (job.id, job.model.clone());
    // Registered before the job exists, so its completion cannot slip past.
    let mut guard = (!wait.is_zero()).then(|| state.wait_for(id));
    let outcome = desk.submit(job).await?;
    let mut replayed = false;
    let mut status = JobStatus::Queued;
    match outcome {
        Submitted::Queued => crate::metrics::submitted(&model),
        Submitted::Scheduled => {
            crate::metrics::submitted(&model);
            status = JobStatus::Scheduled;
        }
        Submitted::Replayed(first) => {
            (id, replayed) = (first, true);
            guard = (!wait.is_zero()).then(|| state.wait_for(id));
        }
        other => return Err(desk.refused(&model, other)),
    }
    tracing::debug!(job_id = %id, model = %model, replayed, "job submitted");
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
    upload: PipelineUpload,
    wait: Duration,
) -> AppResult<Response> {
    let desk = state.desk(caller);
    let job = desk.check_pipeline(upload).await?;
    let (id, queue) = (job.id, job.model.clone());
    // Registered before the job exists, so its completion cannot slip past.
    let guard = (!wait.is_zero()).then(|| state.wait_for(id));
    match desk.submit(job).await? {
        Submitted::Queued => {}
        other => return Err(desk.refused(&queue, other)),
    }
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
