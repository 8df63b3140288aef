//! Request bodies: extractors that check the content type and the size limit and report
//! rejections in the API's error shape (`POST /jobs`'s model or pipeline job, and any JSON or
//! binary-framed body); parsing stays with the handlers (`crate::json`).

use std::sync::Arc;

use crate::error::ApiError;
use crate::state::AppState;
use crate::submit::pipeline::{PipelineUpload, is_pipeline_json};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

/// The request header that gives the JSON part's length when binary tensors follow it (the
/// Open Inference Protocol's binary tensor framing, which `POST /jobs` reads too).
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// A `POST /jobs` body: a model job (JSON or binary-framed), or a pipeline job (multipart with
/// a file part, or JSON with base64 audio). The route's body limit is the larger of the two
/// kinds'; a model job is held to `INFERQ_MAX_BODY_BYTES` here, an upload to
/// `INFERQ_MAX_UPLOAD_BYTES`.
#[derive(Debug)]
pub(crate) enum Submission {
    Model(JobBody),
    Pipeline(PipelineUpload),
}

impl FromRequest<Arc<AppState>> for Submission {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let max_upload = state.config.max_upload_bytes;
        if mime(&req) == "multipart/form-data" {
            let form = axum::extract::Multipart::from_request(req, state)
                .await
                .map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
            return PipelineUpload::from_multipart(form, max_upload)
                .await
                .map(Self::Pipeline);
        }
        let body = JobBody::from_request(req, state).await?;
        if body.json_len.is_none() && is_pipeline_json(&body.bytes) {
            return PipelineUpload::from_json(&body.bytes, max_upload).map(Self::Pipeline);
        }
        if body.bytes.len() > state.config.max_body_bytes {
            return Err(ApiError::PayloadTooLarge(state.config.max_body_bytes));
        }
        Ok(Self::Model(body))
    }
}

/// The request's media type, lowercased, without parameters.
fn mime(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A job request body, as bytes: JSON, or (with `Content-Type: application/octet-stream` and
/// `Inference-Header-Content-Length`) a JSON header followed by binary tensors. Checks the
/// content type and the size limit with the API's error shape; parsing stays with the
/// handler, which borrows from the bytes.
#[derive(Debug)]
pub(crate) struct JobBody {
    pub(crate) bytes: Bytes,
    /// Length of the JSON header when binary tensors follow it.
    pub(crate) json_len: Option<usize>,
}

impl FromRequest<Arc<AppState>> for JobBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let mime = mime(&req);
        let binary = mime == "application/octet-stream";
        if !(binary
            || mime == "application/json"
            || (mime.starts_with("application/") && mime.ends_with("+json")))
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        // Checked even where it is not used (a JSON body): a malformed header is a mistake.
        // A non-negative int64, as the document and the protocol's sizes have it.
        let declared = req
            .headers()
            .get(HEADER_LENGTH)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        ApiError::InvalidRequest(format!("{HEADER_LENGTH} is not a byte count"))
                    })
            })
            .transpose()?;
        let json_len = match declared {
            None if binary => {
                return Err(ApiError::InvalidRequest(format!(
                    "a binary body needs the {HEADER_LENGTH} header (the length of its JSON part)"
                )));
            }
            n if binary => n,
            _ => None,
        };
        let limit = state.config.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else if super::limits::is_body_timeout(&rejection) {
                ApiError::BodyTimeout(state.config.body_timeout_secs)
            } else {
                ApiError::InvalidRequest(rejection.body_text())
            }
        })?;
        if json_len.is_some_and(|n| n == 0 || n > bytes.len()) {
            return Err(ApiError::InvalidRequest(format!(
                "{HEADER_LENGTH} does not fit the body of {} bytes",
                bytes.len()
            )));
        }
        Ok(Self { bytes, json_len })
    }
}
