//! Errors in the Open Inference Protocol's shape, `{"error": "<message>"}`, for the `/v2`
//! routes: the same [`ApiError`]s, with the protocol's status codes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::job::JobId;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, WWW_AUTHENTICATE};

/// Response header naming the job behind an inference that timed out: it keeps running and
/// can be fetched at `/status/<id>`.
pub(crate) const JOB_ID_HEADER: &str = "inferq-job-id";

/// The protocol's error body: `{"error": "<message>"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OipErrorBody {
    error: String,
}

/// An error in the protocol's shape.
#[derive(Debug)]
pub(crate) struct OipError {
    status: StatusCode,
    message: String,
    /// The job behind the answer (a failed or unfinished inference): named in the headers.
    job: Option<JobId>,
    /// `Retry-After` in seconds on a `429` or `503`; 1 when not set.
    retry_after: Option<u64>,
}

pub(crate) type OipResult<T> = Result<T, OipError>;

impl OipError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            job: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        ApiError::Internal(detail.into()).into()
    }

    /// The answer names `job` (`inferq-job-id` and `Location`).
    pub(crate) fn with_job(mut self, job: JobId) -> Self {
        self.job = Some(job);
        self
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl From<ApiError> for OipError {
    fn from(e: ApiError) -> Self {
        let (status, _) = e.status_and_code();
        // The protocol answers client mistakes with 400; 404, 405, 429 and 503 keep their
        // meaning.
        let status = match status {
            StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::CONFLICT => StatusCode::BAD_REQUEST,
            s => s,
        };
        match &e {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable(err) | ApiError::NotReplicated(err) => {
                tracing::warn!(error = %err, "redis unavailable")
            }
            _ => {}
        }
        let retry_after = match &e {
            ApiError::RateLimited(secs) => Some(*secs),
            _ => None,
        };
        Self {
            retry_after,
            ..Self::new(status, e.to_string())
        }
    }
}

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(OipErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after.unwrap_or(1)),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
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
