//! A finished batch's lines: the requests of each job answered from its one record (a packed
//! job's result split back into one OpenAI embeddings response per request: its own vectors,
//! in its own spelling, with its own `usage`), or from the error that ended it; a request
//! that never ran answered with why.

use inferq_shared::JobStatus;
use inferq_shared::embedding::{Embedding, EmbeddingResult, EncodingFormat};
use serde_json::{Value, json};

use super::batch_input::{LineError, Part, Request};
use super::embeddings::{job_result, render};
use crate::error::{ApiError, OpenAiError, OpenAiResult};
use crate::state::AppState;

/// One request's line: `(succeeded, line, prompt tokens)`.
pub(crate) type Answer = (bool, Value, u64);

/// The batch's requests cut into the runs one record answers: the consecutive requests
/// packed into one job, or one request without a job.
pub(crate) fn units(requests: &[Request]) -> impl Iterator<Item = &[Request]> {
    requests.chunk_by(|a, b| a.job.is_some() && a.job == b.job)
}

/// The lines of one unit (see [`units`]), in order: its job's record is read once. A request
/// that did not run (a malformed line, a job cancelled before it ran) has `error` set and no
/// `response`; `unfinished` names why a job is not final (`batch_cancelled`,
/// `batch_expired`).
pub(crate) async fn answer(
    state: &AppState,
    batch: &str,
    unit: &[Request],
    unfinished: &str,
) -> OpenAiResult<Vec<Answer>> {
    let hex = batch.strip_prefix("batch_").unwrap_or(batch);
    let line_id = |r: &Request| format!("batch_req_{hex}_{}", r.line);
    let without = |r: &Request, code: &str, message: &str| -> Answer {
        let line = json!({"id": line_id(r), "custom_id": r.custom_id, "response": null,
            "error": {"code": code, "message": message}});
        (false, line, 0)
    };
    let job = match unit.first().map(|r| (r.job, &r.error)) {
        Some((Some(id), None)) => id,
        _ => {
            return Ok(unit
                .iter()
                .map(|r| {
                    let e = r.error.clone().unwrap_or_else(|| {
                        LineError::new("internal", "the request has neither a job nor an error")
                    });
                    without(r, &e.code, &e.message)
                })
                .collect());
        }
    };
    let Some(record) = state.queue.record(job).await.map_err(ApiError::from)? else {
        let message = "the request's job record expired before the batch was finalized";
        return Ok(unit
            .iter()
            .map(|r| without(r, "job_gone", message))
            .collect());
    };
    let respond = |r: &Request, status: u16, body: Value| {
        json!({"id": line_id(r), "custom_id": r.custom_id, "error": null,
            "response": {"status_code": status, "request_id": job.to_string(), "body": body}})
    };
    let server_error = |code: &str, message: &str| {
        json!({"error": {"message": message, "type": "server_error", "param": null,
            "code": code}})
    };
    match record.status {
        JobStatus::Succeeded => {
            let result = job_result(&record)?;
            let mut lines = Vec::with_capacity(unit.len());
            for r in unit {
                let Some((own, format)) = split(&result, r.part) else {
                    let message = "the job's result does not hold this request's texts";
                    let body = server_error("internal", message);
                    lines.push((false, respond(r, 500, body), 0));
                    continue;
                };
                let tokens = own.total_tokens;
                let body = serde_json::to_value(render(own, format))
                    .map_err(|e| OpenAiError::internal(format!("rendering job {job}: {e}")))?;
                lines.push((true, respond(r, 200, body), tokens));
            }
            Ok(lines)
        }
        JobStatus::Failed => {
            let (code, message) = record.error.unwrap_or_default();
            let body = server_error(&code, &message);
            Ok(unit
                .iter()
                .map(|r| (false, respond(r, 500, body.clone()), 0))
                .collect())
        }
        _ => {
            let message = match unfinished {
                "batch_cancelled" => "the batch was cancelled before this request ran",
                "batch_expired" => "the batch's completion window passed before this request ran",
                _ => "the request's job ended without running",
            };
            Ok(unit
                .iter()
                .map(|r| without(r, unfinished, message))
                .collect())
        }
    }
}

/// A request's own result out of its job's, and the spelling it asked for; `None` when the
/// job's result does not hold its texts. A request without a part had its job alone.
fn split(
    result: &EmbeddingResult,
    part: Option<Part>,
) -> Option<(EmbeddingResult, EncodingFormat)> {
    let Some(part) = part else {
        let format = match result.embeddings.first() {
            Some(Embedding::Base64(_)) => EncodingFormat::Base64,
            _ => EncodingFormat::Float,
        };
        return Some((result.clone(), format));
    };
    let range = part.range();
    let embeddings = result.embeddings.get(range.clone())?.to_vec();
    let token_counts = result.token_counts.get(range.clone())?.to_vec();
    let own = EmbeddingResult {
        model: result.model.clone(),
        dimensions: result.dimensions,
        embeddings,
        total_tokens: token_counts.iter().map(|&n| u64::from(n)).sum(),
        token_counts,
        truncated: result
            .truncated
            .iter()
            .filter(|&&i| range.contains(&(i as usize)))
            .map(|&i| i - part.0)
            .collect(),
        ids: None,
    };
    Some((own, part.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferq_shared::embedding::DIMENSIONS;

    #[test]
    fn a_packed_result_splits_into_each_requests_own() {
        let vector = |x: f32| vec![x; DIMENSIONS];
        let result = EmbeddingResult {
            model: "m".into(),
            dimensions: DIMENSIONS,
            embeddings: (0..5)
                .map(|i| Embedding::encode(&vector(i as f32), EncodingFormat::Base64))
                .collect(),
            token_counts: vec![3, 4, 5, 6, 7],
            truncated: vec![1, 4],
            total_tokens: 25,
            ids: None,
        };
        let (own, format) = split(&result, Some(Part(1, 3, EncodingFormat::Float))).unwrap();
        assert_eq!(format, EncodingFormat::Float);
        assert_eq!(
            (&own.token_counts[..], own.total_tokens),
            (&[4, 5, 6][..], 15)
        );
        assert_eq!(own.truncated, vec![0]);
        let firsts: Vec<f32> = own
            .embeddings
            .iter()
            .map(|e| e.to_vec().unwrap()[0])
            .collect();
        assert_eq!(firsts, [1.0, 2.0, 3.0]);
        let body = serde_json::to_value(render(own, format)).unwrap();
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 15, "total_tokens": 15})
        );
        assert_eq!(body["data"][2]["index"], 2);
        assert_eq!(body["data"][2]["embedding"][0], 3.0);
        assert!(split(&result, Some(Part(4, 2, EncodingFormat::Float))).is_none());
        let (whole, format) = split(&result, None).unwrap();
        assert_eq!((whole.total_tokens, format), (25, EncodingFormat::Base64));
    }
}
