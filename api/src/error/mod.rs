//! The API's one error type: every failure becomes `{"error": {"code", "message"}}` with the
//! right status, and internals never leak into a response; under `/v2` the same error answers
//! in the Open Inference Protocol's shape ([`oip`]), under `/v1` in the OpenAI API's
//! ([`openai`]). [`respond`] is the one place that picks the shape from the path. Nothing here
//! depends on the rest of the API.

pub(crate) mod oip;
pub(crate) mod openai;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use inferq_shared::JobStatus;
use inferq_shared::egress::UrlError;
use inferq_shared::model::ValidationError;
use inferq_shared::queue::QueueError;
use inferq_shared::record::{ErrorBody, RecordError};
use serde::Serialize;
use utoipa::ToSchema;

pub(crate) use oip::{OipError, OipErrorBody, OipResult};
pub(crate) use openai::{OpenAiError, OpenAiErrorBody, OpenAiResult};

/// The `WWW-Authenticate` challenge of every 401.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"inferq\"";

/// Put on a `429 overloaded` answer by [`ApiError`]: the model whose queue is full (read by
/// the middleware that estimates `Retry-After`).
#[derive(Debug, Clone)]
pub(crate) struct FullQueue(pub(crate) String);

/// Put on a `429 quota_exceeded` answer: the model submitted to, and how many of the tenant's
/// jobs must end before the submission fits.
#[derive(Debug, Clone)]
pub(crate) struct TenantExcess {
    pub(crate) model: String,
    pub(crate) excess: u64,
}

/// Under `/v2`, errors keep the protocol's shape, so OIP clients can read them.
pub(crate) fn is_oip_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// Under `/v1`, errors take the OpenAI API's shape, so its SDK can read them.
pub(crate) fn is_openai_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Answers `e` in the error shape of the routes `path` belongs to: `{"error": "<message>"}`
/// under `/v2`, `{"error": {"message", "type", "param", "code"}}` under `/v1`,
/// `{"error": {"code", "message"}}` elsewhere.
pub(crate) fn respond(path: &str, e: ApiError) -> Response {
    if is_oip_path(path) {
        OipError::from(e).into_response()
    } else if is_openai_path(path) {
        OpenAiError::from(e).into_response()
    } else {
        e.into_response()
    }
}

/// The body of every error of the native routes: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

pub(crate) type AppResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{0}")]
    UrlNotAllowed(String),
    #[error("'{0}' is not a valid job id (expected a UUID)")]
    InvalidJobId(String),
    #[error("no job with id {0} (unknown, or its record expired)")]
    JobNotFound(String),
    #[error("no model named '{0}'")]
    ModelNotFound(String),
    #[error("model '{name}' is served by {workers} live worker(s); stop them before retiring it")]
    ModelInUse { name: String, workers: usize },
    #[error(
        "a valid API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    )]
    Unauthorized,
    #[error("this API key lacks the '{0}' scope")]
    Forbidden(inferq_shared::auth::Scope),
    #[error("no API key with id '{0}'")]
    KeyNotFound(String),
    #[error("the request URI is longer than the limit of {0} bytes")]
    UriTooLong(usize),
    #[error("the request headers are larger than the limit of {0} bytes")]
    HeadersTooLarge(usize),
    #[error("the request took longer than the limit of {0} s")]
    RequestTimeout(u64),
    #[error("the request body was not received within {0} s")]
    BodyTimeout(u64),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed for this route")]
    MethodNotAllowed,
    #[error("job is already {0}")]
    AlreadyFinished(JobStatus),
    #[error(
        "the Idempotency-Key was used before with a different request; use a new key for a new job"
    )]
    IdempotencyKeyReused,
    #[error("{message}")]
    InvalidMember { code: &'static str, message: String },
    #[error("no group with id {0} (unknown, or its record expired)")]
    GroupNotFound(String),
    #[error("no dead letter '{0}' (give a job id or a dead_id from GET /dead)")]
    DeadLetterNotFound(String),
    #[error("{0}")]
    NotRetryable(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error(
        "content type must be application/json, application/octet-stream with a JSON header and binary tensors, or multipart/form-data (pipelines)"
    )]
    UnsupportedMediaType,
    #[error("the uploaded file is larger than the limit of {0} bytes")]
    UploadTooLarge(usize),
    #[error("no pipeline named '{0}' (GET /pipelines lists them)")]
    UnknownPipeline(String),
    #[error("the file cannot be decoded: {0}")]
    InvalidAudio(String),
    #[error("{0}")]
    InvalidTexts(String),
    #[error("unknown model '{name}' (served models: {available})")]
    UnknownModel { name: String, available: String },
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("this tenant submits faster than its rate limit; retry in {0} s")]
    RateLimited(u64),
    /// `model`: the queue whose measured rate estimates when `excess` jobs will have ended.
    #[error(
        "this tenant has its most jobs waiting or running (max_queued); {excess} must end \
         before this submission fits"
    )]
    QuotaExceeded { model: String, excess: u64 },
    #[error("the queue of model '{0}' is full; retry later")]
    Overloaded(String),
    #[error("redis is unavailable; retry later")]
    Unavailable(#[source] QueueError),
    /// `INFERQ_REDIS_WAIT_REPLICAS` replicas did not confirm a submission in time.
    #[error("{0}")]
    NotReplicated(QueueError),
    /// A bug or a misconfiguration. The detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl From<UrlError> for ApiError {
    fn from(e: UrlError) -> Self {
        match e {
            UrlError::Invalid(m) => Self::InvalidUrl(m),
            UrlError::NotAllowed(m) => Self::UrlNotAllowed(m),
        }
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        // Only an outage is a 503 that clients should retry; a script error or a wrong type is
        // a bug, and dressing it as an outage would have clients retry it forever.
        if matches!(e, QueueError::NotReplicated { .. }) {
            Self::NotReplicated(e)
        } else if e.is_unavailable() {
            Self::Unavailable(e)
        } else {
            Self::Internal(format!("redis: {e}"))
        }
    }
}

impl ApiError {
    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::InvalidParameter(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter"),
            Self::InvalidUrl(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_url"),
            Self::UrlNotAllowed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "url_not_allowed"),
            Self::InvalidJobId(_) => (StatusCode::BAD_REQUEST, "invalid_job_id"),
            Self::JobNotFound(_) => (StatusCode::NOT_FOUND, "job_not_found"),
            Self::ModelNotFound(_) => (StatusCode::NOT_FOUND, "model_not_found"),
            Self::ModelInUse { .. } => (StatusCode::CONFLICT, "model_in_use"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::KeyNotFound(_) => (StatusCode::NOT_FOUND, "key_not_found"),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            Self::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            Self::RequestTimeout(_) | Self::BodyTimeout(_) => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout")
            }
            Self::RouteNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::AlreadyFinished(_) => (StatusCode::CONFLICT, "job_finished"),
            Self::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            Self::InvalidMember { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::GroupNotFound(_) => (StatusCode::NOT_FOUND, "group_not_found"),
            Self::DeadLetterNotFound(_) => (StatusCode::NOT_FOUND, "dead_letter_not_found"),
            Self::NotRetryable(_) => (StatusCode::CONFLICT, "not_retryable"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::UnknownModel { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_model"),
            Self::UploadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnknownPipeline(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_pipeline"),
            Self::InvalidAudio(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_audio"),
            Self::InvalidTexts(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_texts"),
            Self::Validation(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.code().as_str()),
            Self::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::QuotaExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable"),
            Self::NotReplicated(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_replicated"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Unavailable(e) | Self::NotReplicated(e) => {
                tracing::warn!(error = %e, "redis unavailable")
            }
            Self::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            _ => {}
        }
        let body = ErrorResponse {
            error: ErrorBody {
                code: code.to_owned(),
                message: self.to_string(),
            },
        };
        let mut res = (status, Json(body)).into_response();
        if matches!(self, Self::Unauthorized) {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        if let Self::RateLimited(secs) = &self {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*secs),
            );
        }
        if let Self::Overloaded(model) = &self {
            res.extensions_mut().insert(FullQueue(model.clone()));
        }
        if let Self::QuotaExceeded { model, excess } = &self {
            res.extensions_mut().insert(TenantExcess {
                model: model.clone(),
                excess: *excess,
            });
            // Replaced by the estimate; kept if Redis cannot give the measured rate.
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(inferq_shared::queue::ops::THROUGHPUT_WINDOW_SECS),
            );
        }
        if matches!(
            self,
            Self::Overloaded(_) | Self::Unavailable(_) | Self::NotReplicated(_)
        ) {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        res
    }
}
