//! The Open Inference Protocol v2 REST routes (`/v2/...`) that Triton, KServe and Seldon
//! clients speak. Inference is synchronous for the client and durable underneath: the request
//! becomes a job on the same queue (same validation, batching, leases and retries), and the
//! answer is written when the job finishes. Errors use the protocol's `{"error": "<message>"}`.

pub(crate) mod infer;
pub(crate) mod wire;

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use inferq_shared::model::{ModelInfo, TensorSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::error::{ApiError, OipError, OipErrorBody, OipResult};
use crate::state::AppState;

/// The one version every model has: models are not versioned yet.
pub(crate) const MODEL_VERSION: &str = "1";

/// [`Path`] rejected in the protocol's error shape.
#[derive(Debug)]
pub(crate) struct OipPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for OipPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = OipError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OipError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|e| OipError::bad(e.body_text()))
    }
}

/// `GET /v2`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: Vec<&'static str>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Live {
    live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ready {
    ready: bool,
}

/// `GET /v2/models/<m>`: `-1` marks a dynamic dimension.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelMetadata {
    name: String,
    versions: Vec<&'static str>,
    platform: &'static str,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// `GET /v2/models/<m>/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelReady {
    name: String,
    ready: bool,
}

/// The server's name, version and protocol extensions.
#[utoipa::path(
    get, path = "/v2", operation_id = "oip_server_metadata", tag = "oip",
    responses((status = 200, description = "Server metadata", body = ServerMetadata)),
)]
pub(crate) async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "inferq",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data"],
    })
}

/// Liveness: answers while the process runs.
#[utoipa::path(
    get, path = "/v2/health/live", operation_id = "oip_server_live", tag = "oip",
    responses((status = 200, description = "Live", body = Live)),
)]
pub(crate) async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// Readiness: Redis answers.
#[utoipa::path(
    get, path = "/v2/health/ready", operation_id = "oip_server_ready", tag = "oip",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 500, description = "A bug", body = OipErrorBody),
        (status = 503, description = "Redis is unavailable", body = OipErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> OipResult<Json<Ready>> {
    state.queue.ping().await.map_err(ApiError::from)?;
    Ok(Json(Ready { ready: true }))
}

/// The model, if it exists in `version` (the only one is [`MODEL_VERSION`]).
async fn find_model(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> OipResult<Arc<ModelInfo>> {
    let model = state.models.get(name).await.map_err(ApiError::from)?;
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

/// The model's inputs and outputs.
#[utoipa::path(
    get, path = "/v2/models/{model}", operation_id = "oip_model_metadata", tag = "oip",
    params(("model" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 400, description = "A path that is not UTF-8", body = OipErrorBody),
        (status = 404, description = "Unknown model", body = OipErrorBody),
        (status = 500, description = "A bug", body = OipErrorBody),
        (status = 503, description = "Redis is unavailable", body = OipErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn model_metadata(
    State(state): State<Arc<AppState>>,
    OipPath(model): OipPath<String>,
) -> OipResult<Json<ModelMetadata>> {
    metadata(&state, &model, None).await
}

/// [`model_metadata`] of one version of the model (the only one is `1`).
#[utoipa::path(
    get, path = "/v2/models/{model}/versions/{version}", operation_id = "oip_model_version_metadata",
    tag = "oip",
    params(
        ("model" = String, Path, description = "The model's name"),
        ("version" = String, Path, description = "The model's version: `1`"),
    ),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 400, description = "A path that is not UTF-8", body = OipErrorBody),
        (status = 404, description = "Unknown model or version", body = OipErrorBody),
        (status = 500, description = "A bug", body = OipErrorBody),
        (status = 503, description = "Redis is unavailable", body = OipErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn model_metadata_v(
    State(state): State<Arc<AppState>>,
    OipPath((model, version)): OipPath<(String, String)>,
) -> OipResult<Json<ModelMetadata>> {
    metadata(&state, &model, Some(&version)).await
}

async fn metadata(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> OipResult<Json<ModelMetadata>> {
    let m = find_model(state, name, version).await?;
    Ok(Json(ModelMetadata {
        name: m.name.clone(),
        versions: vec![MODEL_VERSION],
        platform: "onnxruntime_onnx",
        inputs: m.inputs.clone(),
        outputs: m.outputs.clone(),
    }))
}

/// Whether a live worker serves the model.
#[utoipa::path(
    get, path = "/v2/models/{model}/ready", operation_id = "oip_model_ready", tag = "oip",
    params(("model" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "A live worker serves the model", body = ModelReady),
        (status = 400, description = "A path that is not UTF-8", body = OipErrorBody),
        (status = 404, description = "Unknown model", body = OipErrorBody),
        (status = 500, description = "A bug", body = OipErrorBody),
        (status = 503, description = "No live worker serves the model, or Redis is unavailable",
         body = OipErrorBody, headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn model_ready(
    State(state): State<Arc<AppState>>,
    OipPath(model): OipPath<String>,
) -> OipResult<Json<ModelReady>> {
    readiness(&state, &model, None).await
}

/// [`model_ready`] of one version of the model (the only one is `1`).
#[utoipa::path(
    get, path = "/v2/models/{model}/versions/{version}/ready", operation_id = "oip_model_version_ready",
    tag = "oip",
    params(
        ("model" = String, Path, description = "The model's name"),
        ("version" = String, Path, description = "The model's version: `1`"),
    ),
    responses(
        (status = 200, description = "A live worker serves the model", body = ModelReady),
        (status = 400, description = "A path that is not UTF-8", body = OipErrorBody),
        (status = 404, description = "Unknown model or version", body = OipErrorBody),
        (status = 500, description = "A bug", body = OipErrorBody),
        (status = 503, description = "No live worker serves the model, or Redis is unavailable",
         body = OipErrorBody, headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn model_ready_v(
    State(state): State<Arc<AppState>>,
    OipPath((model, version)): OipPath<(String, String)>,
) -> OipResult<Json<ModelReady>> {
    readiness(&state, &model, Some(&version)).await
}

/// Ready = a live worker serves the model (its jobs would still queue without one).
async fn readiness(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> OipResult<Json<ModelReady>> {
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
        return Err(OipError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no live worker serves model '{}'", m.name),
        ));
    }
    Ok(Json(ModelReady {
        name: m.name.clone(),
        ready: true,
    }))
}
