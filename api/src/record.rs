//! `GET /status/<id>`: the job record as clients read it, rendered from the stored job.

use inferq_shared::job::{JobId, JobStatus};
use inferq_shared::payload;
use inferq_shared::queue::StoredJob;
use inferq_shared::time::rfc3339_ms;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::ApiError;

/// A failure as clients see it: a stable machine-readable code and a human message.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// The job record, timestamps in RFC 3339.
#[derive(Debug, Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub model: String,
    pub status: JobStatus,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempts: u32,
    /// `{"outputs": [...]}`, rendered from the worker's binary result.
    pub result: Option<Box<RawValue>>,
    pub error: Option<ErrorBody>,
}

impl TryFrom<StoredJob> for JobRecord {
    type Error = ApiError;

    fn try_from(job: StoredJob) -> Result<Self, ApiError> {
        let id = job.id;
        let bad = |e: &dyn std::fmt::Display| {
            ApiError::Internal(format!("stored result of job {id} is unreadable: {e}"))
        };
        let json = match job.result {
            None => None,
            // Rendered from bytes, here, for the client that asked.
            Some(bytes) if payload::is_result_frame(&bytes) => {
                Some(payload::result_to_json(&bytes).map_err(|e| bad(&e))?)
            }
            // Written as JSON by a worker from before binary results.
            Some(bytes) => Some(String::from_utf8(bytes).map_err(|e| bad(&e))?),
        };
        let result = json
            .map(RawValue::from_string)
            .transpose()
            .map_err(|e| bad(&e))?;
        Ok(Self {
            id: job.id,
            model: job.model,
            status: job.status,
            created_at: job.created_at.map(rfc3339_ms),
            started_at: job.started_at.map(rfc3339_ms),
            finished_at: job.finished_at.map(rfc3339_ms),
            attempts: job.attempts,
            result,
            error: job.error.map(|(code, message)| ErrorBody { code, message }),
        })
    }
}
