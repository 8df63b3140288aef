//! The job record as clients read it (`GET /status/<id>`, webhook payloads), rendered from the
//! stored job.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::job::{JobId, JobStatus};
use crate::payload;
use crate::pipeline::{self, Progress};
use crate::queue::keys::pipeline_of;
use crate::queue::{Position, StoredJob};
use crate::time::rfc3339_ms;
use crate::webhook::WebhookStatus;

/// A failure as clients see it: a stable machine-readable code and a human message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable and machine-readable, e.g. `job_not_found`, `shape_mismatch`.
    pub code: String,
    pub message: String,
}

/// The job record, timestamps in RFC 3339.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobRecord {
    pub id: JobId,
    /// The model the job runs (for a pipeline job, the model its pipeline runs).
    pub model: String,
    /// Pipeline jobs: the pipeline (`GET /pipelines`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    pub status: JobStatus,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub attempts: u32,
    /// `parameters.priority`: 0 to 9, higher starts sooner among the model's waiting jobs.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: u8,
    /// A model job's `{"outputs": [...]}` (rendered from the worker's binary result), or a
    /// pipeline job's result (`speech_segments`, `text_embeddings`).
    #[schema(value_type = Option<ResultBody>)]
    pub result: Option<Box<RawValue>>,
    /// Why the job failed (or was cancelled), when it did.
    pub error: Option<ErrorBody>,
    /// While queued: how many jobs of the same model wait ahead of it: those of a higher
    /// priority and the older ones of its own (exact at the moment of reading on one
    /// partition, counted up to 10,000; priority aging may later let an older lower-priority
    /// job pass). With several partitions (`INFERQ_PARTITIONS`), every partition's: those of a
    /// higher priority and those of its own queued before it, by the time in their entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    /// While queued: estimated milliseconds until it starts, from the model's throughput over
    /// the last minute; absent when nothing finished in that minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    /// When a scheduled job may start (`parameters.run_at` / `delay_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub run_at: Option<String>,
    /// Present (true) when the job was answered from the result cache without running.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// Pipeline jobs: seconds of input processed and in all, written by the running attempt
    /// at least once a second; starts over when another worker redoes the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Increases with every change of the record (state, attempt, progress); the `id:` of the
    /// job's server-sent events (`GET /jobs/{id}/events`).
    pub version: u64,
    /// Jobs submitted with a `webhook`: where its latest delivery stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookStatus>,
}

/// A finished job's result: a model job's outputs, or a pipeline's result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub enum ResultBody {
    Model(JobResult),
    SpeechSegments(pipeline::SpeechResult),
    TextEmbeddings(crate::embedding::EmbeddingResult),
}

/// A finished model job's result, as the record renders it from the worker's binary result.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub struct JobResult {
    outputs: Vec<ResultTensor>,
}

/// An output tensor of a result: `data` (flat, row-major; floats JSON cannot spell are
/// `"NaN"`, `"Infinity"`, `"-Infinity"`), or with `Accept: application/octet-stream`,
/// `parameters.binary_data_size` with the bytes after the JSON.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub struct ResultTensor {
    name: String,
    #[schema(schema_with = crate::model::datatype_schema)]
    datatype: String,
    shape: Vec<i64>,
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Value>,
    data: Option<Vec<serde_json::Value>>,
}

/// A stored result that cannot be rendered (a bug, or a record damaged in Redis).
#[derive(Debug, thiserror::Error)]
#[error("stored result of job {id} is unreadable: {message}")]
pub struct RecordError {
    pub id: JobId,
    pub message: String,
}

impl JobRecord {
    /// Adds where a queued job stands.
    pub fn with_position(mut self, p: Option<Position>) -> Self {
        if let Some(p) = p {
            self.queue_position = Some(p.ahead);
            // The jobs ahead, and this one, at the recent rate.
            self.eta_ms = (p.completed_last_minute > 0)
                .then(|| (p.ahead + 1) * 60_000 / p.completed_last_minute);
        }
        self
    }
}

impl TryFrom<StoredJob> for JobRecord {
    type Error = RecordError;

    fn try_from(job: StoredJob) -> Result<Self, RecordError> {
        let id = job.id;
        let bad = |e: &dyn std::fmt::Display| RecordError {
            id,
            message: e.to_string(),
        };
        let cached = job.cached;
        let run_at = job.due.map(rfc3339_ms);
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
        let pipeline = pipeline_of(&job.model).map(str::to_owned);
        let progress = pipeline.as_ref().map(|_| {
            let (done, total) = job.progress.unwrap_or((0.0, None));
            Progress { done, total }
        });
        let model = match pipeline.as_deref().and_then(pipeline::pipeline_model) {
            Some(model) => model.to_owned(),
            None => job.model,
        };
        Ok(Self {
            id: job.id,
            model,
            pipeline,
            progress,
            status: job.status,
            created_at: job.created_at.map(rfc3339_ms),
            started_at: job.started_at.map(rfc3339_ms),
            finished_at: job.finished_at.map(rfc3339_ms),
            attempts: job.attempts,
            priority: job.priority.level(),
            result,
            error: job.error.map(|(code, message)| ErrorBody { code, message }),
            queue_position: None,
            eta_ms: None,
            cached,
            run_at,
            version: job.version,
            webhook: job.webhook,
        })
    }
}
