//! Request bodies: a JSON body extractor that reports rejections in the API's error shape,
//! and parsing that reports syntax errors before shape errors.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body, as bytes: checks the content type and the size limit with the API's
/// error shape; parsing stays with the handler, which borrows from the bytes.
pub(crate) struct JsonBody(pub Bytes);

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(mime == "application/json"
            || (mime.starts_with("application/") && mime.ends_with("+json")))
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config.max_body_bytes;
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(limit)
                } else {
                    ApiError::InvalidRequest(rejection.body_text())
                }
            })
    }
}

pub(crate) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // A shape error can surface before a syntax error further on; syntax wins.
        if e.classify() != serde_json::error::Category::Data {
            return ApiError::MalformedJson(e.to_string());
        }
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(syntax) => ApiError::MalformedJson(syntax.to_string()),
            Ok(_) => ApiError::InvalidRequest(e.to_string()),
        }
    })
}
