//! Jobs: identities, lifecycle states, the submitted request and the record clients read back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::tensor::InputTensor;

/// A job's identity: a random UUID, so ids are unguessable and need no coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// `[scheduled →] queued → running → succeeded | failed | cancelled`; the last three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its `run_at` / `delay_ms` time; then `queued`.
    Scheduled,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// The job status a webhook event leads to.
impl From<crate::webhook::WebhookEvent> for JobStatus {
    fn from(event: crate::webhook::WebhookEvent) -> Self {
        use crate::webhook::WebhookEvent;
        match event {
            WebhookEvent::Started => Self::Running,
            WebhookEvent::Succeeded => Self::Succeeded,
            WebhookEvent::Failed => Self::Failed,
            WebhookEvent::Cancelled => Self::Cancelled,
        }
    }
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Scheduled,
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How soon a job starts among the waiting jobs of its model: 0 (last) to 9 (first), 5 by
/// default. Each priority has its own lane (stream) per model; workers take the lane whose
/// oldest waiting job ranks highest, counting one level more for every aging period it has
/// waited, so no job starves (see the worker's `INFERQ_PRIORITY_AGING_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(u8);

impl Priority {
    pub const DEFAULT: Self = Self(5);
    pub const HIGHEST: Self = Self(9);
    pub const LOWEST: Self = Self(0);

    /// `None` above 9.
    pub fn new(level: u8) -> Option<Self> {
        (level <= Self::HIGHEST.0).then_some(Self(level))
    }

    pub fn level(self) -> u8 {
        self.0
    }

    /// Every priority, highest first.
    pub fn all() -> impl DoubleEndedIterator<Item = Self> + ExactSizeIterator {
        (Self::LOWEST.0..=Self::HIGHEST.0).rev().map(Self)
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An output the client asks for; without the `outputs` list it gets all of them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct OutputRequest {
    pub name: String,
}

/// Optional per-job settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct JobParameters {
    /// Fail the job with `deadline_exceeded` if it has not started this many ms after submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Same, as an absolute time in milliseconds since the Unix epoch. With both, the earlier
    /// one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// Keep this job's record and result this many seconds once it is final (1 to 31,536,000),
    /// instead of the server's `INFERQ_RESULT_TTL_SECS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub result_ttl_secs: Option<u64>,
    /// Answer from the result cache: if a job of the same model file with byte-identical
    /// inputs and requested outputs succeeded within `INFERQ_CACHE_TTL_SECS`, this job is
    /// `succeeded` at once with that result (`"cached": true`), without running; otherwise it
    /// runs and its result is cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// Do not start before this time: RFC 3339 (`2026-11-22T08:00:00Z`) or Unix epoch
    /// milliseconds. The job is `scheduled` until then, then `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RunAt>)]
    pub run_at: Option<serde_json::Value>,
    /// Do not start before this many milliseconds after submission (instead of `run_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// 0 to 9, default 5: among the waiting jobs of its model, a higher priority starts
    /// sooner. A waiting job counts one level higher for every `INFERQ_PRIORITY_AGING_SECS`
    /// (default 30) it has waited, so a steady flow of high-priority jobs delays lower ones
    /// but never starves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u8>,
    /// Test hooks (cargo feature `test-hooks`, absent from release builds): make the worker
    /// that runs this job abort its process (a native crash, the OOM killer) or panic.
    /// Not in the OpenAPI document: a fuzzer must not crash the workers it tests.
    #[cfg(feature = "test-hooks")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub test_hook: Option<TestHook>,
}

/// What a test hook does to the worker running the job.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestHook {
    /// `std::process::abort()` while decoding the job.
    AbortWorker,
    /// A panic on the inference thread while decoding the job.
    PanicInference,
    /// A panic in the tokio task that records the job's outcome.
    PanicTask,
    /// Two seconds of sleep on the inference thread while decoding the job: a run as long on
    /// any machine (the `slow` model's time depends on the CPU).
    SlowDecode,
}

/// The forms `parameters.run_at` takes (for the OpenAPI document; the value is read by
/// [`JobParameters::due_ms`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RunAt {
    /// Unix epoch milliseconds.
    Millis(u64),
    /// RFC 3339.
    #[schema(format = DateTime)]
    Rfc3339(String),
}

/// Longest `result_ttl_secs`: a year.
pub const MAX_RESULT_TTL_SECS: u64 = 365 * 24 * 3600;

impl JobParameters {
    /// When the job may start, ms since the epoch, given its submission time; `None` for at
    /// once. Errors name the parameter that is wrong.
    pub fn due_ms(&self, submitted_ms: u64) -> Result<Option<u64>, String> {
        match (&self.run_at, self.delay_ms) {
            (Some(_), Some(_)) => {
                Err("give parameters.run_at or parameters.delay_ms, not both".into())
            }
            (None, None) => Ok(None),
            (None, Some(d)) => Ok(Some(submitted_ms.saturating_add(d))),
            (Some(serde_json::Value::Number(n)), None) => n.as_u64().map(Some).ok_or_else(|| {
                format!("parameters.run_at {n} is not a time in epoch milliseconds")
            }),
            (Some(serde_json::Value::String(s)), None) => crate::time::parse_rfc3339_ms(s)
                .map(Some)
                .ok_or_else(|| format!("parameters.run_at '{s}' is not an RFC 3339 time")),
            (Some(other), None) => Err(format!(
                "parameters.run_at must be an RFC 3339 string or epoch milliseconds, got {other}"
            )),
        }
    }

    /// The job's priority; errors name the parameter.
    pub fn priority(&self) -> Result<Priority, String> {
        match self.priority {
            None => Ok(Priority::DEFAULT),
            Some(p) => Priority::new(p)
                .ok_or_else(|| format!("parameters.priority must be between 0 and 9, got {p}")),
        }
    }

    /// The time the job must start by, if any, given its submission time.
    pub fn deadline_ms(&self, submitted_ms: u64) -> Option<u64> {
        let relative = self.timeout_ms.map(|t| submitted_ms.saturating_add(t));
        match (relative, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `POST /jobs` body, borrowed from the request bytes. The same bytes are what the worker
/// receives, so the request is parsed at the edge and never re-serialized.
#[derive(Debug, Deserialize)]
pub struct JobRequest<'a> {
    pub model: String,
    #[serde(borrow)]
    pub inputs: Vec<InputTensor<'a>>,
    #[serde(default)]
    pub outputs: Option<Vec<OutputRequest>>,
    #[serde(default)]
    pub parameters: Option<JobParameters>,
    /// Where to deliver the job's events.
    #[serde(default)]
    pub webhook: Option<crate::webhook::WebhookRequest>,
}

/// Why a job failed: each variant is one stable, machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    MissingInput,
    UnknownInput,
    DuplicateInput,
    UnsupportedDatatype,
    DatatypeMismatch,
    ShapeMismatch,
    InvalidShape,
    DataLengthMismatch,
    InvalidData,
    UnknownOutput,
    UnknownModel,
    InferenceError,
    UnsupportedOutput,
    DeadlineExceeded,
    MaxAttemptsExceeded,
    MalformedEntry,
    ModelRetired,
    /// A pipeline's input could not be decoded (not audio, truncated, empty, unsupported).
    InvalidAudio,
    /// The worker stopped before the job ran to the end (its inference threads shut down).
    WorkerStopping,
    /// An input's `url` (or a webhook's) is not an http(s) URL.
    InvalidUrl,
    /// An input's `url` points at an address the guard refuses (`INFERQ_FETCH_ALLOW`).
    UrlNotAllowed,
    /// An input's `url` could not be fetched (status, size, timeout, connection).
    InputFetchFailed,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::MissingInput => "missing_input",
            Self::UnknownInput => "unknown_input",
            Self::DuplicateInput => "duplicate_input",
            Self::UnsupportedDatatype => "unsupported_datatype",
            Self::DatatypeMismatch => "datatype_mismatch",
            Self::ShapeMismatch => "shape_mismatch",
            Self::InvalidShape => "invalid_shape",
            Self::DataLengthMismatch => "data_length_mismatch",
            Self::InvalidData => "invalid_data",
            Self::UnknownOutput => "unknown_output",
            Self::UnknownModel => "unknown_model",
            Self::InferenceError => "inference_error",
            Self::UnsupportedOutput => "unsupported_output",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::MaxAttemptsExceeded => "max_attempts_exceeded",
            Self::MalformedEntry => "malformed_entry",
            Self::ModelRetired => "model_retired",
            Self::InvalidAudio => "invalid_audio",
            Self::WorkerStopping => "worker_stopping",
            Self::InvalidUrl => "invalid_url",
            Self::UrlNotAllowed => "url_not_allowed",
            Self::InputFetchFailed => "input_fetch_failed",
            Self::Internal => "internal",
        }
    }

    /// Whether another attempt may succeed where this one failed: a retryable failure goes
    /// back to the queue (as a worker crash would) instead of ending the job. Everything
    /// about the request itself is permanent: running it again gives the same answer.
    pub fn retryable(self) -> bool {
        matches!(self, Self::WorkerStopping)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's failure: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
}

impl JobError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
