//! The Open Inference Protocol v2 REST routes (`/v2/...`) that Triton, KServe and Seldon
//! clients speak. Inference is synchronous for the client and durable underneath: the request
//! becomes a job on the same queue (same validation, batching, leases and retries), and the
//! answer is written when the job finishes. Errors use the protocol's `{"error": "<message>"}`.

pub(crate) mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use inferq_shared::JobStatus;
use inferq_shared::job::JobId;
use inferq_shared::model::{ModelInfo, valid_model_name};
use inferq_shared::payload::{self, JobHeader};
use inferq_shared::queue::Submitted;
use serde_json::json;

use crate::error::ApiError;
use crate::jobs::wait_for_job;
use crate::state::AppState;
pub(crate) use wire::HEADER_LENGTH;
use wire::{InferRequest, InferResponse};

/// The one version every model has: models are not versioned yet.
pub(crate) const MODEL_VERSION: &str = "1";

/// Response header naming the job behind an inference that timed out: it keeps running and
/// can be fetched at `/status/<id>`.
pub(crate) const JOB_ID_HEADER: &str = "inferq-job-id";

/// An error in the protocol's shape.
#[derive(Debug)]
pub(crate) struct OipError {
    status: StatusCode,
    message: String,
    job: Option<JobId>,
}

impl OipError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            job: None,
        }
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        ApiError::Internal(detail.into()).into()
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            job: None,
        }
    }
}

impl From<ApiError> for OipError {
    fn from(e: ApiError) -> Self {
        let (status, _) = e.status_and_code();
        // The protocol answers client mistakes with 400; 404, 429 and 503 keep their meaning.
        let status = match status {
            StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::CONFLICT => StatusCode::BAD_REQUEST,
            s => s,
        };
        match &e {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable(err) => tracing::warn!(error = %err, "redis unavailable"),
            _ => {}
        }
        Self {
            status,
            message: e.to_string(),
            job: None,
        }
    }
}

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(id) = self.job {
            let headers = res.headers_mut();
            for (name, value) in [
                (JOB_ID_HEADER, id.to_string()),
                ("location", format!("/status/{id}")),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
        }
        res
    }
}

type OipResult<T> = Result<T, OipError>;

/// The `/v2` routes, each model route with and without `/versions/{version}`.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "inferq",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(state): State<Arc<AppState>>) -> OipResult<Json<serde_json::Value>> {
    state.queue.ping().await.map_err(ApiError::from)?;
    Ok(Json(json!({ "ready": true })))
}

/// The model, if it exists in `version` (the only one is [`MODEL_VERSION`]).
async fn find_model(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> OipResult<Arc<ModelInfo>> {
    let model = if valid_model_name(name) {
        state.model(name).await.map_err(ApiError::from)?
    } else {
        None
    };
    let model = model.ok_or_else(|| {
        OipError::not_found(format!(
            "unknown model '{}'",
            name.chars().take(128).collect::<String>()
        ))
    })?;
    match version {
        Some(v) if v != MODEL_VERSION => Err(OipError::not_found(format!(
            "model '{name}' has no version '{}' (versions: {MODEL_VERSION})",
            v.chars().take(64).collect::<String>()
        ))),
        _ => Ok(model),
    }
}

async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> OipResult<Json<serde_json::Value>> {
    metadata(&state, &model, None).await
}

async fn model_metadata_v(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> OipResult<Json<serde_json::Value>> {
    metadata(&state, &model, Some(&version)).await
}

async fn metadata(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> OipResult<Json<serde_json::Value>> {
    let m = find_model(state, name, version).await?;
    Ok(Json(json!({
        "name": m.name,
        "versions": [MODEL_VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": m.inputs,
        "outputs": m.outputs,
    })))
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> OipResult<Json<serde_json::Value>> {
    readiness(&state, &model, None).await
}

async fn model_ready_v(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> OipResult<Json<serde_json::Value>> {
    readiness(&state, &model, Some(&version)).await
}

/// Ready = a live worker serves the model (its jobs would still queue without one).
async fn readiness(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> OipResult<Json<serde_json::Value>> {
    let m = find_model(state, name, version).await?;
    let workers = state
        .queue
        .model_statuses()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .find(|s| s.info.name == m.name)
        .map_or(0, |s| s.workers);
    if workers == 0 {
        return Err(OipError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("no live worker serves model '{}'", m.name),
            job: None,
        });
    }
    Ok(Json(json!({ "name": m.name, "ready": true })))
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> OipResult<Response> {
    run_inference(&state, &model, None, &headers, &body).await
}

async fn infer_v(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> OipResult<Response> {
    run_inference(&state, &model, Some(&version), &headers, &body).await
}

/// Parses the request whatever its content type (OIP clients often send none), submits it as
/// a job, waits for the outcome up to the request's `timeout_ms` (capped by
/// `INFERQ_MAX_WAIT_SECS`), and answers in JSON or binary framing as asked.
async fn run_inference(
    state: &AppState,
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
    };
    model
        .validate_header(&job)
        .map_err(|e| OipError::bad(e.to_string()))?;
    let payload = payload::encode_job(&job, &data);

    let max = Duration::from_secs(state.config.max_wait_secs);
    let wait = req
        .timeout_ms()
        .map_or(max, |ms| Duration::from_millis(ms).min(max));
    let id = JobId::new();
    // Registered before the job exists, so its completion cannot slip past.
    let guard = state.wait_for(id);
    match state
        .queue
        .submit(id, &model.name, &payload, state.config.max_queued, None)
        .await
        .map_err(ApiError::from)?
    {
        Submitted::Queued => {}
        Submitted::QueueFull => return Err(ApiError::Overloaded(model.name.clone()).into()),
        Submitted::UnknownModel => {
            return Err(OipError::not_found(format!(
                "unknown model '{}'",
                model.name
            )));
        }
    }
    let until = tokio::time::Instant::now() + wait;
    let stored = wait_for_job(state, &guard, id, until, false).await?;
    match stored.status {
        JobStatus::Succeeded => {}
        JobStatus::Queued | JobStatus::Running => {
            return Err(OipError {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!(
                    "the inference did not finish within {} ms; it is still {} as job {id} (GET /status/{id})",
                    wait.as_millis(),
                    stored.status
                ),
                job: Some(id),
            });
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
            return Err(OipError {
                status,
                message: format!("{code}: {message}"),
                job: Some(id),
            });
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
