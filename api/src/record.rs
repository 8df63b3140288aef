//! `GET /status/<id>`: the job record (rendered in `inferq_shared::record`), and its binary
//! form.

use inferq_shared::payload;
use inferq_shared::queue::StoredJob;
use inferq_shared::record::RecordError;
use serde_json::value::RawValue;

use axum::Json;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::oip::HEADER_LENGTH;
use crate::oip::wire::render_outputs;

pub use inferq_shared::record::{ErrorBody, JobRecord};

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The record with its outputs as binary tensors: the JSON record (each output with
/// `parameters.binary_data_size` instead of `data`) followed by the outputs' raw little-endian
/// bytes in `outputs` order, its length in `Inference-Header-Content-Length`. A record without
/// a binary result is plain JSON.
pub(crate) fn binary_response(mut job: StoredJob) -> Result<Response, ApiError> {
    let Some(bytes) = job.result.take_if(|r| payload::is_result_frame(r)) else {
        return Ok(Json(JobRecord::try_from(job)?).into_response());
    };
    let id = job.id;
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::Internal(format!("stored result of job {id} is unreadable: {e}"))
    };
    let (header, parts) = payload::decode_result(&bytes).map_err(|e| bad(&e))?;
    let (outputs, chunks) =
        render_outputs(header.outputs.into_iter().zip(parts).collect(), |_| true)
            .map_err(|e| bad(&e.message()))?;
    let result =
        serde_json::to_string(&serde_json::json!({ "outputs": outputs })).map_err(|e| bad(&e))?;
    let mut record = JobRecord::try_from(job)?;
    record.result = Some(RawValue::from_string(result).map_err(|e| bad(&e))?);
    let mut body = serde_json::to_vec(&record).map_err(|e| bad(&e))?;
    let json_len = body.len();
    body.extend_from_slice(&chunks);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_len),
            ),
        ],
        body,
    )
        .into_response())
}
