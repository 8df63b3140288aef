//! Where a batch stands, read from its jobs: `request_counts` while it runs (a request counts
//! as its job stands, so they grow a pack of requests at a time); the jobs still pending
//! cancelled when it is cancelled or its window passes; and, once every job is final, its last
//! step (the lease of `batch_finalize.lua`): the output file (one line per succeeded request)
//! and the error file (one per failed one) rendered from the jobs' records (`batch_output`)
//! and stored, then the final status. Whichever API process reads the batch first does it, so
//! a batch needs no process of its own, and a finalizer that dies is taken over.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use inferq_shared::queue::Retention;
use inferq_shared::queue::batches::{FinishedBatch, StoredBatch};
use inferq_shared::queue::files::StoredFile;
use inferq_shared::{JobId, JobStatus};

use super::batch_input::{BatchRecord, Request};
use super::batch_output;
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
async fn count(state: &AppState, requests: &[Request]) -> OpenAiResult<(Counts, Vec<JobId>)> {
    // A job answers every request packed into it: each is read once.
    let mut seen = HashSet::new();
    let ids: Vec<JobId> = requests
        .iter()
        .filter_map(|r| r.job)
        .filter(|id| seen.insert(*id))
        .collect();
    let statuses = state
        .queue
        .job_statuses(&ids)
        .await
        .map_err(ApiError::from)?;
    let statuses: HashMap<JobId, Option<JobStatus>> = ids
        .iter()
        .zip(statuses)
        .map(|(id, s)| (*id, s.as_deref().and_then(JobStatus::parse)))
        .collect();
    let (mut completed, mut failed) = (0, 0);
    for r in requests {
        match r.job.and_then(|id| statuses.get(&id).copied().flatten()) {
            Some(JobStatus::Succeeded) => completed += 1,
            Some(s) if !s.is_terminal() => {}
            // No job (refused), failed, cancelled, or a record gone.
            _ => failed += 1,
        }
    }
    let pending = ids
        .into_iter()
        .filter(|id| statuses[id].is_some_and(|s| !s.is_terminal()))
        .collect();
    Ok(((requests.len() as u64, completed, failed), pending))
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
    let answers: Vec<_> = batch_output::units(requests)
        .map(|unit| batch_output::answer(state, &batch.id, unit, unfinished))
        .collect();
    let mut answers = futures_util::stream::iter(answers).buffered(CONCURRENCY);
    let (mut output, mut errors) = (Vec::new(), Vec::new());
    let (mut completed, mut failed, mut tokens) = (0, 0, 0);
    while let Some(lines) = answers.next().await {
        for (ok, value, used) in lines? {
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
