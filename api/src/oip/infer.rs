//! `POST /v2/models/<m>[/versions/<v>]/infer`: an inference request becomes a job on the queue,
//! and the answer is written when the job finishes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::JobStatus;
use inferq_shared::payload::{self, JobHeader};
use inferq_shared::queue::Submitted;
use inferq_shared::telemetry;

use super::wire::{self, HEADER_LENGTH, InferRequest, InferResponse};
use super::{MODEL_VERSION, OipPath, find_model};
use crate::caller::Principal;
use crate::error::{ApiError, OipError, OipErrorBody, OipResult};
use crate::http::extract::{TraceparentHeader, traceparent};
use crate::state::{AppState, wait_for_job};
use crate::submit::{Asks, Checked, Draft};

/// Runs an inference and answers with its outputs.
#[utoipa::path(
    post, path = "/v2/models/{model}/infer", operation_id = "oip_infer", tag = "oip",
    params(
        ("model" = String, Path, description = "The model's name"),
        ("Inference-Header-Content-Length" = Option<u64>, Header, nullable = false,
         description = "With binary inputs: the length of the JSON part"),
        TraceparentHeader,
    ),
    request_body(
        description = "The inference request as JSON, or its JSON part followed by the binary \
            inputs (`parameters.binary_data_size` in place of `data`, raw little-endian bytes in \
            input order). Read whatever the Content-Type.",
        content((InferRequest<'_> = "application/json"), ("application/octet-stream")),
    ),
    responses(
        (status = 200, description = "The outputs; with binary outputs, the JSON part then their \
            bytes in `outputs` order",
         content((InferResponse = "application/json"), ("application/octet-stream")),
         headers(("Inference-Header-Content-Length" = u64,
                  description = "With binary outputs: the length of the JSON part"))),
        (status = 400, description = "The request does not fit: malformed JSON, a wrong input, bad \
            binary sizes, or the job failed (`<code>: <message>`)", body = OipErrorBody,
         headers(("inferq-job-id" = uuid::Uuid, description = "The job, when it failed"),
                 ("Location" = String, description = "`/status/<id>`, when the job failed"))),
        (status = 404, description = "Unknown model", body = OipErrorBody),
        (status = 413, description = "The body is over INFERQ_MAX_BODY_BYTES", body = OipErrorBody),
        (status = 429, description = "The model's queue is full", body = OipErrorBody,
         headers(("Retry-After" = u32))),
        (status = 500, description = "A bug", body = OipErrorBody),
        (status = 503, description = "Redis is unavailable", body = OipErrorBody,
         headers(("Retry-After" = u32))),
        (status = 504, description = "Not finished within `timeout_ms`: the job goes on",
         body = OipErrorBody,
         headers(("inferq-job-id" = uuid::Uuid, description = "The job: `GET /status/<id>`"),
                 ("Location" = String, description = "`/status/<id>`"))),
    ),
)]
pub(crate) async fn infer(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OipPath(model): OipPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OipResult<Response> {
    run_inference(
        &state,
        &caller,
        &model,
        None,
        &headers,
        &read_body(body, &state)?,
    )
    .await
}

/// [`infer`] on one version of the model (the only one is `1`).
#[utoipa::path(
    post, path = "/v2/models/{model}/versions/{version}/infer", operation_id = "oip_infer_version",
    tag = "oip",
    params(
        ("model" = String, Path, description = "The model's name"),
        ("version" = String, Path, description = "The model's version: `1`"),
        ("Inference-Header-Content-Length" = Option<u64>, Header, nullable = false,
         description = "With binary inputs: the length of the JSON part"),
        TraceparentHeader,
    ),
    request_body(
        description = "The inference request as JSON, or its JSON part followed by the binary \
            inputs (`parameters.binary_data_size` in place of `data`, raw little-endian bytes in \
            input order). Read whatever the Content-Type.",
        content((InferRequest<'_> = "application/json"), ("application/octet-stream")),
    ),
    responses(
        (status = 200, description = "The outputs; with binary outputs, the JSON part then their \
            bytes in `outputs` order",
         content((InferResponse = "application/json"), ("application/octet-stream")),
         headers(("Inference-Header-Content-Length" = u64,
                  description = "With binary outputs: the length of the JSON part"))),
        (status = 400, description = "The request does not fit: malformed JSON, a wrong input, bad \
            binary sizes, or the job failed (`<code>: <message>`)", body = OipErrorBody,
         headers(("inferq-job-id" = uuid::Uuid, description = "The job, when it failed"),
                 ("Location" = String, description = "`/status/<id>`, when the job failed"))),
        (status = 404, description = "Unknown model or version", body = OipErrorBody),
        (status = 413, description = "The body is over INFERQ_MAX_BODY_BYTES", body = OipErrorBody),
        (status = 429, description = "The model's queue is full", body = OipErrorBody,
         headers(("Retry-After" = u32))),
        (status = 500, description = "A bug", body = OipErrorBody),
        (status = 503, description = "Redis is unavailable", body = OipErrorBody,
         headers(("Retry-After" = u32))),
        (status = 504, description = "Not finished within `timeout_ms`: the job goes on",
         body = OipErrorBody,
         headers(("inferq-job-id" = uuid::Uuid, description = "The job: `GET /status/<id>`"),
                 ("Location" = String, description = "`/status/<id>`"))),
    ),
)]
pub(crate) async fn infer_v(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OipPath((model, version)): OipPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OipResult<Response> {
    run_inference(
        &state,
        &caller,
        &model,
        Some(&version),
        &headers,
        &read_body(body, &state)?,
    )
    .await
}

/// The body, or the rejection in the protocol's shape (axum's own is `text/plain`).
fn read_body(body: Result<Bytes, BytesRejection>, state: &AppState) -> OipResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.config.max_body_bytes).into()
        } else if crate::http::limits::is_body_timeout(&rejection) {
            ApiError::BodyTimeout(state.config.body_timeout_secs).into()
        } else {
            OipError::bad(rejection.body_text())
        }
    })
}

/// Parses the request whatever its content type (OIP clients often send none), submits it as
/// a job, waits for the outcome up to the request's `timeout_ms` (capped by
/// `INFERQ_MAX_WAIT_SECS`), and answers in JSON or binary framing as asked.
async fn run_inference(
    state: &AppState,
    caller: &Principal,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> OipResult<Response> {
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|v| v.to_str().unwrap_or("not text"));
    let (json_part, binary) = wire::split_body(body, header_length)?;
    let req: InferRequest<'_> = serde_json::from_slice(json_part)
        .map_err(|e| OipError::bad(format!("the request is not a valid inference request: {e}")))?;
    let model = find_model(state, name, version).await?;
    let tensors = req.tensors(binary)?;
    let (inputs, data): (Vec<_>, Vec<_>) = tensors.into_iter().unzip();
    let job = JobHeader {
        model: model.name.clone(),
        inputs,
        outputs: req
            .outputs
            .as_ref()
            .map(|o| o.iter().map(|o| o.name.clone()).collect()),
        parameters: None,
        urls: Vec::new(),
    };
    model
        .validate_header(&job)
        .map_err(|e| OipError::bad(e.to_string()))?;
    let draft = Draft {
        payload: payload::encode_job(&job, &data),
        model: model.clone(),
        parameters: None,
        webhook: None,
    };

    let max = Duration::from_secs(state.config.max_wait_secs);
    let wait = req
        .timeout_ms()
        .map_or(max, |ms| Duration::from_millis(ms).min(max));
    let desk = state.desk(caller);
    let asks = Asks {
        trace: telemetry::carried(traceparent(headers)),
        ..Asks::default()
    };
    let Checked::Job(job) = desk.check(draft, asks).await? else {
        return Err(OipError::internal(
            "an inference was answered from the cache",
        ));
    };
    let id = job.id;
    // Registered before the job exists, so its completion cannot slip past.
    let guard = state.wait_for(id);
    let submitted = desk.submit(*job).await?;
    match submitted {
        Submitted::Queued => crate::metrics::submitted(&model.name),
        Submitted::UnknownModel => {
            return Err(OipError::not_found(format!(
                "unknown model '{}'",
                model.name
            )));
        }
        Submitted::Replayed(_)
        | Submitted::IdempotencyKeyReused
        | Submitted::NotSubmitted
        | Submitted::Scheduled => {
            return Err(
                ApiError::Internal("an inference without a key was replayed".into()).into(),
            );
        }
        other => return Err(desk.refused(&model.name, other).into()),
    }
    let until = tokio::time::Instant::now() + wait;
    let stored = wait_for_job(state, caller, &guard, id, until, false).await?;
    match stored.status {
        JobStatus::Succeeded => {}
        JobStatus::Scheduled | JobStatus::Queued | JobStatus::Running => {
            return Err(OipError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the inference did not finish within {} ms; it is still {} as job {id} (GET /status/{id})",
                    wait.as_millis(),
                    stored.status
                ),
            )
            .with_job(id));
        }
        JobStatus::Failed | JobStatus::Cancelled => {
            let (code, message) = stored
                .error
                .unwrap_or_else(|| ("cancelled".into(), "the job was cancelled".into()));
            let status = if code == "internal" {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            return Err(OipError::new(status, format!("{code}: {message}")).with_job(id));
        }
    }
    let result = stored
        .result
        .ok_or_else(|| OipError::internal(format!("job {id} succeeded without a result")))?;
    let (header, parts) = payload::decode_result(&result)
        .map_err(|e| OipError::internal(format!("result of job {id}: {e}")))?;
    let tensors = header.outputs.into_iter().zip(parts).collect();
    let (outputs, chunks) = wire::render_outputs(tensors, |n| req.binary_output(n))?;
    let response = InferResponse {
        model_name: model.name.clone(),
        model_version: MODEL_VERSION.into(),
        id: req.id.clone(),
        outputs,
    };
    let json = serde_json::to_vec(&response)
        .map_err(|e| OipError::internal(format!("rendering the response: {e}")))?;
    if chunks.is_empty() {
        return Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response());
    }
    let json_len = json.len();
    let mut body = json;
    body.extend_from_slice(&chunks);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_len),
            ),
        ],
        Body::from(body),
    )
        .into_response())
}
