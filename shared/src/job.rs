//! Jobs: identities, lifecycle states, the submitted request and the record clients read back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::tensor::InputTensor;

/// A job's identity: a random UUID, so ids are unguessable and need no coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// `queued → running → succeeded | failed | cancelled`; the last three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
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

/// An output the client asks for; without the `outputs` list it gets all of them.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputRequest {
    pub name: String,
}

/// Optional per-job settings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobParameters {
    /// Fail the job with `deadline_exceeded` if it has not started this many ms after submission.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Same, as an absolute time in milliseconds since the Unix epoch. With both, the earlier
    /// one applies.
    #[serde(default)]
    pub deadline: Option<u64>,
    /// Test hook: a worker started with `INFERQ_TEST_HOOKS=1` aborts its whole process when it
    /// runs this job, to exercise crash recovery. Ignored by every other worker.
    #[serde(default)]
    pub test_abort_worker: bool,
}

impl JobParameters {
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
}

/// A job's failure as clients see it: a stable machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// `GET /status/<id>`: the job record, timestamps in RFC 3339.
#[derive(Debug, Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub model: String,
    pub status: JobStatus,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempts: u32,
    /// `{"outputs": [...]}` exactly as the worker serialized it.
    pub result: Option<Box<RawValue>>,
    pub error: Option<JobError>,
}
