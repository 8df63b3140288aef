//! Errors in the OpenAI API's shape, `{"error": {"message", "type", "param", "code"}}`, for the
//! `/v1` routes: the same [`ApiError`]s, with OpenAI's status codes (a request that does not
//! fit is `400 invalid_request_error`; a bad key `401` with `invalid_api_key`), so the
//! `openai` SDK raises the exception a caller of OpenAI expects.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, FullQueue, TenantExcess, WWW_AUTHENTICATE};

/// `type` of an error the request caused.
pub(crate) const INVALID_REQUEST: &str = "invalid_request_error";

/// The error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorBody {
    error: OpenAiErrorObject,
}

/// OpenAI's error object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorObject {
    pub(crate) message: String,
    /// `invalid_request_error`, `permission_error`, `requests` (a rate or quota), or
    /// `server_error`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// The request parameter at fault, when one is.
    pub(crate) param: Option<String>,
    /// What went wrong, in a word: `invalid_api_key`, `model_not_found`, or the native code.
    pub(crate) code: Option<String>,
}

/// An error in OpenAI's shape, boxed: it travels in every `Result` of the face.
#[derive(Debug)]
pub(crate) struct OpenAiError(Box<Detail>);

/// What an [`OpenAiError`] holds.
#[derive(Debug)]
pub(crate) struct Detail {
    pub(crate) status: StatusCode,
    pub(crate) object: OpenAiErrorObject,
    /// `Retry-After` in seconds on a `429` or `503`; 1 when not set.
    retry_after: Option<u64>,
    /// For the middleware that estimates `Retry-After` (see [`FullQueue`]).
    full_queue: Option<FullQueue>,
    excess: Option<TenantExcess>,
}

impl std::ops::Deref for OpenAiError {
    type Target = Detail;
    fn deref(&self) -> &Detail {
        &self.0
    }
}

impl std::ops::DerefMut for OpenAiError {
    fn deref_mut(&mut self) -> &mut Detail {
        &mut self.0
    }
}

pub(crate) type OpenAiResult<T> = Result<T, OpenAiError>;

impl OpenAiError {
    /// An error of the request: `400 invalid_request_error`, naming `param` when one is at
    /// fault.
    pub(crate) fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message, None).with_param(param)
    }

    /// `404` for an id the caller's tenant does not have (unknown, expired, or another
    /// tenant's: the same answer), as OpenAI gives it: no code, `param` naming the id.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, INVALID_REQUEST, message, None).with_param(Some("id"))
    }

    /// `404 model_not_found` for a model inferq does not serve on `/v1`.
    pub(crate) fn model_not_found(model: &str) -> Self {
        let name: String = model.chars().take(128).collect();
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("The model `{name}` does not exist or you do not have access to it."),
            Some("model_not_found"),
        )
        .with_param(Some("model"))
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        ApiError::Internal(detail.into()).into()
    }

    pub(crate) fn new(
        status: StatusCode,
        kind: &str,
        message: impl Into<String>,
        code: Option<&str>,
    ) -> Self {
        Self(Box::new(Detail {
            status,
            object: OpenAiErrorObject {
                message: message.into(),
                kind: kind.to_owned(),
                param: None,
                code: code.map(str::to_owned),
            },
            retry_after: None,
            full_queue: None,
            excess: None,
        }))
    }

    /// The error's parts, taken out.
    pub(crate) fn into_detail(self) -> Detail {
        *self.0
    }

    pub(crate) fn with_param(mut self, param: Option<&str>) -> Self {
        self.object.param = param.map(str::to_owned);
        self
    }

    pub(crate) fn with_code(mut self, code: &str) -> Self {
        self.object.code = Some(code.to_owned());
        self
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        let (status, code) = e.status_and_code();
        // OpenAI answers every request that does not fit with 400.
        let status = match status {
            StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::CONFLICT => StatusCode::BAD_REQUEST,
            s => s,
        };
        let (kind, code) = match status {
            StatusCode::UNAUTHORIZED => (INVALID_REQUEST, "invalid_api_key"),
            StatusCode::FORBIDDEN => ("permission_error", code),
            StatusCode::TOO_MANY_REQUESTS => ("requests", code),
            s if s.is_server_error() => ("server_error", code),
            _ => (INVALID_REQUEST, code),
        };
        match &e {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable(err) | ApiError::NotReplicated(err) => {
                tracing::warn!(error = %err, "redis unavailable")
            }
            _ => {}
        }
        let mut out = Self::new(status, kind, e.to_string(), Some(code));
        match e {
            ApiError::RateLimited(secs) => out.retry_after = Some(secs),
            ApiError::Overloaded(model) => out.full_queue = Some(FullQueue(model)),
            ApiError::QuotaExceeded { model, excess } => {
                out.retry_after = Some(inferq_shared::queue::ops::THROUGHPUT_WINDOW_SECS);
                out.excess = Some(TenantExcess { model, excess });
            }
            _ => {}
        }
        out
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let this = self.into_detail();
        let mut res = (this.status, Json(OpenAiErrorBody { error: this.object })).into_response();
        let headers = res.headers_mut();
        if matches!(
            this.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(this.retry_after.unwrap_or(1)),
            );
        }
        if this.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        if let Some(q) = this.full_queue {
            res.extensions_mut().insert(q);
        }
        if let Some(e) = this.excess {
            res.extensions_mut().insert(e);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_errors_take_openai_statuses_and_types() {
        let cases = [
            (
                ApiError::Unauthorized,
                401,
                INVALID_REQUEST,
                "invalid_api_key",
            ),
            (
                ApiError::InvalidParameter("x".into()),
                400,
                INVALID_REQUEST,
                "invalid_parameter",
            ),
            (
                ApiError::MalformedJson("x".into()),
                400,
                INVALID_REQUEST,
                "malformed_json",
            ),
            (
                ApiError::RouteNotFound("/v1/x".into()),
                404,
                INVALID_REQUEST,
                "not_found",
            ),
            (ApiError::RateLimited(3), 429, "requests", "rate_limited"),
            (
                ApiError::Internal("secret detail".into()),
                500,
                "server_error",
                "internal",
            ),
        ];
        for (e, status, kind, code) in cases {
            let o = OpenAiError::from(e);
            assert_eq!(o.status.as_u16(), status);
            assert_eq!(o.object.kind, kind);
            assert_eq!(o.object.code.as_deref(), Some(code));
            assert!(!o.object.message.contains("secret"));
        }
    }
}
