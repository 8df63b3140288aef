//! A batch's input: the request lines of its file read and checked one by one (a malformed
//! line fails only its own request), and what the batch stores about its requests (packed
//! into jobs by `batch_pack`).

use std::collections::HashSet;

use inferq_shared::embedding::EncodingFormat;
use inferq_shared::job::JobId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::embeddings::{self, EmbeddingsRequest};
use crate::error::OpenAiError;

/// The one endpoint a batch may run.
pub(crate) const EMBEDDINGS_ENDPOINT: &str = "/v1/embeddings";

/// Most requests in one batch, as OpenAI allows.
pub(crate) const MAX_REQUESTS: usize = 50_000;

/// The parts of a batch that never change, stored as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BatchRecord {
    pub(crate) input_file_id: String,
    pub(crate) endpoint: String,
    pub(crate) completion_window: String,
    pub(crate) metadata: Option<Map<String, Value>>,
    /// Unix seconds.
    pub(crate) created_at: u64,
    pub(crate) in_progress_at: Option<u64>,
    pub(crate) expires_at: u64,
    /// Why a batch failed whole (its input file could not be read as requests).
    pub(crate) errors: Option<Vec<BatchErrorItem>>,
}

/// OpenAI's batch error: what refused the input, and its line when one did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct BatchErrorItem {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) line: Option<usize>,
}

/// One request of a batch as stored: its `custom_id` and the job it was packed into (with
/// where its texts sit there), or the error that failed it before it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    #[serde(rename = "c")]
    pub(crate) custom_id: Option<String>,
    #[serde(rename = "j", default, skip_serializing_if = "Option::is_none")]
    pub(crate) job: Option<JobId>,
    /// Its texts among its job's. Absent in batches stored before requests were packed, whose
    /// every job holds one request, answered with the whole result.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub(crate) part: Option<Part>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<LineError>,
    /// Its line in the input file, from 1.
    #[serde(rename = "l")]
    pub(crate) line: usize,
}

/// Where a request's texts sit in the job it was packed into, and how it asked for its
/// vectors (a packed job stores them as base64, exactly; each request gets its own spelling).
/// Stored as a 3-array, as a batch holds up to 50,000 of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part(
    /// The index of its first text among the job's texts.
    pub(crate) u32,
    /// Its texts.
    pub(crate) u32,
    pub(crate) EncodingFormat,
);

impl Part {
    /// Its texts' indices among the job's.
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        let first = self.0 as usize;
        first..first + self.1 as usize
    }
}

/// Why a request failed without running.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LineError {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl LineError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<OpenAiError> for LineError {
    fn from(e: OpenAiError) -> Self {
        let e = e.into_detail();
        let code = e.object.code.unwrap_or_else(|| e.object.kind.clone());
        Self {
            code,
            message: e.object.message,
        }
    }
}

/// A request line read: its `custom_id` (when it had one) and its checked request, or why not.
pub(crate) type Line = (Option<String>, Result<embeddings::Wanted, LineError>);

/// Reads one request line of a batch for `endpoint`.
fn read_line(text: &str, seen: &mut HashSet<String>) -> Line {
    let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(text) else {
        let e = LineError::new("invalid_json_line", "this line is not a JSON object");
        return (None, Err(e));
    };
    let custom_id = match v.remove("custom_id") {
        Some(Value::String(s)) => s,
        _ => {
            let e = LineError::new("missing_required_parameter", "custom_id must be a string");
            return (None, Err(e));
        }
    };
    let id = Some(custom_id.clone());
    if !seen.insert(custom_id) {
        let e = LineError::new(
            "duplicate_custom_id",
            "this custom_id is used by an earlier line",
        );
        return (id, Err(e));
    }
    if v.get("method").and_then(Value::as_str) != Some("POST") {
        let e = LineError::new("invalid_method", "method must be POST");
        return (id, Err(e));
    }
    if v.get("url").and_then(Value::as_str) != Some(EMBEDDINGS_ENDPOINT) {
        let e = LineError::new(
            "invalid_url",
            format!("url must be the batch's endpoint, {EMBEDDINGS_ENDPOINT}"),
        );
        return (id, Err(e));
    }
    let wanted = match v.remove("body") {
        Some(body @ Value::Object(_)) => serde_json::from_value::<EmbeddingsRequest>(body)
            .map_err(|e| LineError::new("invalid_request", format!("body: {e}")))
            .and_then(|r| r.check().map_err(LineError::from)),
        _ => Err(LineError::new(
            "invalid_request",
            "body must be a JSON object",
        )),
    };
    (id, wanted)
}

/// The request lines of an input file (blank lines skipped), each with its line number; or
/// why the file cannot be a batch at all (not UTF-8, no request, too many).
pub(crate) fn read_lines(content: &[u8]) -> Result<Vec<(usize, Line)>, BatchErrorItem> {
    let whole = |code: &str, message: String| BatchErrorItem {
        code: code.to_owned(),
        message,
        param: Some("input_file_id".to_owned()),
        line: None,
    };
    let text = std::str::from_utf8(content).map_err(|_| {
        whole(
            "invalid_file_format",
            "the input file is not UTF-8 text".into(),
        )
    })?;
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if lines.len() == MAX_REQUESTS {
            return Err(whole(
                "too_many_requests",
                format!("the input file holds more than {MAX_REQUESTS} requests"),
            ));
        }
        lines.push((i + 1, read_line(line, &mut seen)));
    }
    if lines.is_empty() {
        return Err(whole(
            "empty_file",
            "the input file holds no request".into(),
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferq_shared::pipeline::EMBEDDING_MODEL;

    fn line(custom_id: &str, body: Value) -> String {
        serde_json::json!({"custom_id": custom_id, "method": "POST", "url": EMBEDDINGS_ENDPOINT,
            "body": body})
        .to_string()
    }

    #[test]
    fn a_bad_line_fails_only_its_request() {
        let good = serde_json::json!({"model": EMBEDDING_MODEL, "input": "hello"});
        let file = [
            line("a", good.clone()),
            String::new(),
            "not json".into(),
            line("b", serde_json::json!({"model": "gpt-x", "input": "hello"})),
            line("a", good.clone()),
            line(
                "c",
                serde_json::json!({"model": EMBEDDING_MODEL, "input": ""}),
            ),
            line("d", good),
        ]
        .join("\n");
        let lines = read_lines(file.as_bytes()).unwrap();
        let summary: Vec<(usize, Option<&str>, Option<&str>)> = lines
            .iter()
            .map(|(n, (id, w))| (*n, id.as_deref(), w.as_ref().err().map(|e| e.code.as_str())))
            .collect();
        assert_eq!(
            summary,
            [
                (1, Some("a"), None),
                (3, None, Some("invalid_json_line")),
                (4, Some("b"), Some("model_not_found")),
                (5, Some("a"), Some("duplicate_custom_id")),
                (6, Some("c"), Some("invalid_request_error")),
                (7, Some("d"), None),
            ]
        );
    }

    #[test]
    fn a_file_that_is_no_batch_is_refused_whole() {
        assert_eq!(read_lines(b"\n \n").unwrap_err().code, "empty_file");
        assert_eq!(read_lines(b"\xff").unwrap_err().code, "invalid_file_format");
    }
}
