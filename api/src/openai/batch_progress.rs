//! Where a batch stands, read from its jobs: `request_counts` while it runs; the jobs still
//! pending cancelled when it is cancelled or its window passes; and, once every job is final,
//! its last step (the lease of `batch_finalize.lua`): the output file (one line per succeeded
//! request) and the error file (one per failed one) rendered from the jobs' records and
//! stored, then the final status. Whichever API process reads the batch first does it, so a
//! batch needs no process of its own, and a finalizer that dies is taken over.

use std::time::Duration;

use futures_util::StreamExt;
use inferq_shared::JobStatus;
use inferq_shared::embedding::{Embedding, EncodingFormat};
use inferq_shared::queue::Retention;
use inferq_shared::queue::batches::{FinishedBatch, StoredBatch};
use inferq_shared::queue::files::StoredFile;
use serde_json::{Value, json};

use super::batch_input::{BatchRecord, Request};
use super::embeddings::{job_result, render};
use super::files::{BATCH_OUTPUT, FILE_PREFIX};
use super::{KEEP_SECS, now_secs};
use crate::error::{ApiError, OpenAiError, OpenAiResult};
use crate::state::AppState;

/// How long one finalizer may take before another takes its step over.
const FINALIZE_LEASE: Duration = Duration::from_secs(120);

/// Jobs read or cancelled at a time.
const CONCURRENCY: usize = 32;

/// `(total, completed, failed)`.
pub(crate) type Counts = (u64, u64, u64);

/// Whether a batch status is final.
pub(crate) fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "cancelled" | "expired" | "failed")
}

pub(crate) fn record(batch: &StoredBatch) -> OpenAiResult<BatchRecord> {
    serde_json::from_str(&batch.record)
        .map_err(|e| OpenAiError::internal(format!("batch {} record: {e}", batch.id)))
}

async fn requests(state: &AppState, id: &str) -> OpenAiResult<Vec<Request>> {
    let text = state
        .queue
        .batch_requests(id)
        .await
        .map_err(ApiError::from)?
        .unwrap_or_else(|| "[]".into());
    serde_json::from_str(&text)
        .map_err(|e| OpenAiError::internal(format!("batch {id} requests: {e}")))
}

/// The batch brought up to date, and its counts: final batches as stored; otherwise counted
/// from the jobs, the pending ones cancelled if the batch is cancelling or past its window,
/// and finalized once none is pending.
pub(crate) async fn refresh(
    state: &AppState,
    batch: StoredBatch,
) -> OpenAiResult<(StoredBatch, Counts)> {
    if is_final(&batch.status) {
        let counts = batch.counts.unwrap_or((0, 0, 0));
        return Ok((batch, counts));
    }
    let record = record(&batch)?;
    let requests = requests(state, &batch.id).await?;
    let (mut counts, mut pending) = count(state, &requests).await?;
    let expired = batch.status == "in_progress" && now_secs() >= record.expires_at;
    if (batch.status == "cancelling" || expired) && !pending.is_empty() {
        let retention = Retention {
            result_ttl: Duration::from_secs(state.config.result_ttl_secs),
        };
        let cancels: Vec<_> = pending
            .into_iter()
            .map(|id| state.queue.cancel(id, retention))
            .collect();
        let cancelled: Vec<_> = futures_util::stream::iter(cancels)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for c in cancelled {
            c.map_err(ApiError::from)?;
        }
        (counts, pending) = count(state, &requests).await?;
    }
    if !pending.is_empty() {
        return Ok((batch, counts));
    }
    let ending = if expired { "expired" } else { "completed" };
    finalize(state, &batch, &requests, ending).await?;
    let batch = state
        .queue
        .batch(&batch.id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| OpenAiError::internal("a batch vanished while finalizing"))?;
    let counts = batch.counts.unwrap_or(counts);
    Ok((batch, counts))
}

/// The counts of the requests as their jobs stand, and the jobs not final yet.
async fn count(
    state: &AppState,
    requests: &[Request],
) -> OpenAiResult<(Counts, Vec<inferq_shared::JobId>)> {
    let ids: Vec<_> = requests.iter().filter_map(|r| r.job).collect();
    let statuses = state
        .queue
        .job_statuses(&ids)
        .await
        .map_err(ApiError::from)?;
    let total = requests.len() as u64;
    let mut failed = (requests.len() - ids.len()) as u64;
    let (mut completed, mut pending) = (0, Vec::new());
    for (id, status) in ids.into_iter().zip(statuses) {
        match status.as_deref().and_then(JobStatus::parse) {
            Some(JobStatus::Succeeded) => completed += 1,
            Some(s) if !s.is_terminal() => pending.push(id),
            // Failed, cancelled, or a record gone.
            _ => failed += 1,
        }
    }
    Ok(((total, completed, failed), pending))
}

/// The batch's last step, if this process gets its lease: render and store the output and
/// error files, then end the batch `ending` (`cancelled` when it was cancelling).
async fn finalize(
    state: &AppState,
    batch: &StoredBatch,
    requests: &[Request],
    ending: &str,
) -> OpenAiResult<()> {
    let Some(token) = state
        .queue
        .begin_finalizing(&batch.id, ending, FINALIZE_LEASE)
        .await
        .map_err(ApiError::from)?
    else {
        return Ok(());
    };
    let cancelled = batch.status == "cancelling";
    let unfinished = if cancelled {
        "batch_cancelled"
    } else if ending == "expired" {
        "batch_expired"
    } else {
        "job_gone"
    };
    // The futures are made first: a stream mapping with a closure over borrowed requests is
    // not `Send` for every lifetime, which the handlers' futures must be.
    let answers: Vec<_> = requests
        .iter()
        .map(|r| answer(state, &batch.id, r, unfinished))
        .collect();
    let lines: Vec<OpenAiResult<(bool, Value, u64)>> = futures_util::stream::iter(answers)
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let (mut output, mut errors) = (Vec::new(), Vec::new());
    let (mut completed, mut failed, mut tokens) = (0, 0, 0);
    for line in lines {
        let (ok, value, used) = line?;
        let file = if ok { &mut output } else { &mut errors };
        serde_json::to_writer(&mut *file, &value)
            .map_err(|e| OpenAiError::internal(format!("rendering a batch line: {e}")))?;
        file.push(b'\n');
        if ok {
            completed += 1;
            tokens += used;
        } else {
            failed += 1;
        }
    }
    let output_id = store(state, batch, "output", &output).await?;
    let error_id = store(state, batch, "error", &errors).await?;
    let done = FinishedBatch {
        counts: (requests.len() as u64, completed, failed),
        tokens,
        output_file_id: output_id.as_deref(),
        error_file_id: error_id.as_deref(),
    };
    state
        .queue
        .finish_batch(&batch.id, &token, &done)
        .await
        .map_err(ApiError::from)?;
    Ok(())
}

/// One request's line: `(succeeded, line, prompt tokens)`. A request that did not run (a
/// malformed line, a job cancelled before it ran) has `error` set and no `response`.
async fn answer(
    state: &AppState,
    batch: &str,
    r: &Request,
    unfinished: &str,
) -> OpenAiResult<(bool, Value, u64)> {
    let hex = batch.strip_prefix("batch_").unwrap_or(batch);
    let without = |code: &str, message: &str| {
        json!({"id": format!("batch_req_{hex}_{}", r.line), "custom_id": r.custom_id,
            "response": null, "error": {"code": code, "message": message}})
    };
    let (Some(id), None) = (r.job, &r.error) else {
        let e = r
            .error
            .clone()
            .unwrap_or_else(|| super::batch_input::LineError {
                code: "internal".into(),
                message: "the request has neither a job nor an error".into(),
            });
        return Ok((false, without(&e.code, &e.message), 0));
    };
    let Some(job) = state.queue.record(id).await.map_err(ApiError::from)? else {
        let message = "the request's job record expired before the batch was finalized";
        return Ok((false, without("job_gone", message), 0));
    };
    let line_id = format!("batch_req_{}", id.0.simple());
    let respond = |status: u16, body: Value| {
        json!({"id": line_id, "custom_id": r.custom_id, "error": null,
            "response": {"status_code": status, "request_id": id.to_string(), "body": body}})
    };
    match job.status {
        JobStatus::Succeeded => {
            let result = job_result(&job)?;
            let format = match result.embeddings.first() {
                Some(Embedding::Base64(_)) => EncodingFormat::Base64,
                _ => EncodingFormat::Float,
            };
            let tokens = result.total_tokens;
            let body = serde_json::to_value(render(result, format))
                .map_err(|e| OpenAiError::internal(format!("rendering job {id}: {e}")))?;
            Ok((true, respond(200, body), tokens))
        }
        JobStatus::Failed => {
            let (code, message) = job.error.unwrap_or_default();
            let body = json!({"error": {"message": message, "type": "server_error",
                "param": null, "code": code}});
            Ok((false, respond(500, body), 0))
        }
        _ => {
            let message = match unfinished {
                "batch_cancelled" => "the batch was cancelled before this request ran",
                "batch_expired" => "the batch's completion window passed before this request ran",
                _ => "the request's job ended without running",
            };
            Ok((false, without(unfinished, message), 0))
        }
    }
}

/// Stores one of the batch's files (none when `content` is empty) under an id derived from
/// the batch, so a finalizer that repeats the step writes the same file again.
async fn store(
    state: &AppState,
    batch: &StoredBatch,
    kind: &str,
    content: &[u8],
) -> OpenAiResult<Option<String>> {
    use sha2::Digest;
    if content.is_empty() {
        return Ok(None);
    }
    let digest = hex::encode(sha2::Sha256::digest(format!("{}/{kind}", batch.id)));
    let now = now_secs();
    let file = StoredFile {
        id: format!("{FILE_PREFIX}{}", &digest[..32]),
        tenant: batch.tenant.clone(),
        filename: format!("{}_{kind}.jsonl", batch.id),
        purpose: BATCH_OUTPUT.to_owned(),
        bytes: content.len() as u64,
        created_at: now,
        expires_at: Some(now + KEEP_SECS),
    };
    state
        .queue
        .store_file(&file, content, Duration::from_secs(KEEP_SECS))
        .await
        .map_err(ApiError::from)?;
    Ok(Some(file.id))
}
