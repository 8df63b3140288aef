//! The text embeddings pipeline as a kind of job for the consume loop: up to the configured
//! number of jobs at once, one per start, their texts pooled in the shared [`Engine`]. Per job
//! the texts are read from its upload, a progress writer runs while the engine embeds them
//! (fenced, so a cancelled or taken-over attempt learns it must stop), and the result is
//! encoded and settled. Leases work as for model jobs: a killed worker's job is reclaimed and
//! redone from the start by another. On shutdown running jobs get the grace period.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use inferq_shared::embedding::{
    DIMENSIONS, Embedding, EmbeddingJob, EmbeddingResult, EncodingFormat, TextBatch,
};
use inferq_shared::job::{ErrorCode, JobError};
use inferq_shared::pipeline;
use inferq_shared::queue::{Delivery, Outcome, Queue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::engine::Engine;
use super::pool::Output;
use crate::consume::{Attempt, Fence, Kind, Settle};
use crate::infer::models::ModelSpec;

/// How often a running job's progress is written.
const PROGRESS_EVERY: Duration = Duration::from_millis(400);

/// A worker takes another job only while fewer texts than this wait in its engine: the
/// engine is kept busy, and the other jobs stay in the queue for other workers rather than
/// waiting behind this one's texts.
const BACKLOG_LOW: usize = 256;

/// Bytes of an upload read in one Redis call.
const SLICE: usize = 4 * 1024 * 1024;

/// The text embeddings pipeline of a worker.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddingJobs {
    /// Uploads, progress.
    queue: Queue,
    engine: Engine,
    /// Jobs running at once: one permit each.
    slots: Arc<Semaphore>,
}

/// The engine's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbeddingConfig {
    /// Engine threads; default: one per core.
    pub(crate) threads: Option<usize>,
    /// Most rows × longest row (tokens, padding included) in one run.
    pub(crate) token_budget: usize,
    /// Jobs one worker runs at once.
    pub(crate) concurrency: usize,
}

/// How one attempt ended.
enum Ended {
    Outcome(Outcome),
    /// Not this attempt's to record (Redis trouble reading the upload): the job goes back.
    HandBack,
}

impl EmbeddingJobs {
    /// The pipeline of a worker that serves its model (`None` otherwise): loads the tokenizer
    /// next to the model and starts the engine threads.
    pub(crate) fn new(
        models: &[ModelSpec],
        config: EmbeddingConfig,
        queue: Queue,
    ) -> anyhow::Result<Option<Self>> {
        let Some(model) = models
            .iter()
            .find(|m| m.info.name == pipeline::EMBEDDING_MODEL)
        else {
            return Ok(None);
        };
        let dir = model
            .path
            .parent()
            .context("the model file has no folder")?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let engine = Engine::start(dir, config.threads.unwrap_or(cores), config.token_budget)
            .context("starting the embedding engine")?;
        Ok(Some(Self {
            queue,
            engine,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
        }))
    }

    /// Runs one attempt and settles it: its outcome is recorded, or it goes back to the queue.
    async fn attempt(self, queue: usize, attempt: Attempt, settle: Settle) {
        let (d, fence) = (&attempt.delivery, attempt.fence);
        let span = tracing::info_span!("job", job_id = %d.job, pipeline = %settle.name(queue), attempt = fence.attempt());
        match self.execute(d, fence).instrument(span).await {
            Ended::Outcome(outcome) => {
                settle
                    .complete(queue, vec![(attempt.lease(), outcome)])
                    .await;
            }
            Ended::HandBack => settle.hand_back(queue, vec![attempt.lease()]).await,
        }
    }

    /// Runs one job: read its texts, embed them in the engine while writing progress, and
    /// encode the result.
    async fn execute(&self, d: &Delivery, fence: Fence) -> Ended {
        let token = fence.attempt();
        let fail =
            |code, message: String| Ended::Outcome(Outcome::Failed(JobError::new(code, message)));
        let job: EmbeddingJob = match serde_json::from_slice(&d.payload) {
            Ok(j) => j,
            Err(e) => {
                return fail(
                    ErrorCode::InvalidRequest,
                    format!("unreadable pipeline job: {e}"),
                );
            }
        };
        let batch = match self.read_texts(d).await {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                return fail(
                    ErrorCode::InvalidRequest,
                    "the uploaded texts are gone (they expired before the job ran)".into(),
                );
            }
            Err(Unreadable::Redis(e)) => {
                tracing::warn!(error = %e, "reading the texts failed; handing the job back");
                return Ended::HandBack;
            }
            Err(Unreadable::Malformed(m)) => return fail(ErrorCode::InvalidRequest, m),
        };
        let total = batch.texts.len();
        if total as u64 != job.texts {
            return fail(
                ErrorCode::InvalidRequest,
                format!("the upload holds {total} texts, the job {}", job.texts),
            );
        }
        let mut embedding = self.engine.embed(batch.texts);
        // Drops the job's texts from the engine however this ends.
        let _guard = CancelOnDrop(embedding.job.clone());
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut last_done = usize::MAX;
        let output = loop {
            tokio::select! {
                r = &mut embedding.done => break r,
                _ = tick.tick() => {
                    let done = embedding.job.done.load(Ordering::Relaxed);
                    if done == last_done {
                        continue;
                    }
                    last_done = done;
                    match self.queue.progress(d.job, token, done as f64, Some(total as f64)).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::info!(job_id = %d.job, "embedding job cancelled or taken over; stopping");
                            return fail(ErrorCode::Internal, "stopped: the job was cancelled or taken over".into());
                        }
                        Err(e) => tracing::warn!(error = %e, "writing progress failed"),
                    }
                }
            }
        };
        let output = match output {
            Ok(Ok(o)) => o,
            Ok(Err(m)) => return fail(ErrorCode::Internal, m),
            Err(_) => return fail(ErrorCode::Internal, "the embedding engine stopped".into()),
        };
        let stats = self.engine.stats();
        tracing::debug!(
            job_id = %d.job,
            texts = total,
            // Since the worker started, over all jobs: texts per call is the batching.
            engine_calls = stats.calls.load(Ordering::Relaxed),
            engine_texts = stats.texts.load(Ordering::Relaxed),
            "embedding job run"
        );
        if let Err(e) = self
            .queue
            .progress(d.job, token, total as f64, Some(total as f64))
            .await
        {
            tracing::warn!(error = %e, "writing the final progress failed");
        }
        let format = job.settings.encoding_format;
        let ids = batch.ids;
        let encoded = tokio::task::spawn_blocking(move || encode(output, format, ids)).await;
        match encoded {
            Ok(Ok(bytes)) => Ended::Outcome(Outcome::Succeeded(bytes)),
            Ok(Err(e)) => fail(ErrorCode::Internal, format!("encoding the result: {e}")),
            Err(e) => fail(ErrorCode::Internal, format!("encoding the result: {e}")),
        }
    }

    /// The job's texts from its upload, read in slices and parsed off the tokio threads;
    /// `None` when the upload is gone.
    async fn read_texts(&self, d: &Delivery) -> Result<Option<TextBatch>, Unreadable> {
        let len = self
            .queue
            .upload_len(d.job)
            .await
            .map_err(Unreadable::Redis)?;
        if len == 0 {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(len as usize);
        while (bytes.len() as u64) < len {
            let slice = self
                .queue
                .read_upload(d.job, bytes.len() as u64, SLICE)
                .await
                .map_err(Unreadable::Redis)?;
            if slice.is_empty() {
                // Deleted under us (the job was cancelled): the progress write will tell.
                return Ok(None);
            }
            bytes.extend_from_slice(&slice);
        }
        tokio::task::spawn_blocking(move || serde_json::from_slice::<TextBatch>(&bytes))
            .await
            .map_err(|e| Unreadable::Malformed(format!("reading the texts: {e}")))?
            .map(Some)
            .map_err(|e| Unreadable::Malformed(format!("the uploaded texts are unreadable: {e}")))
    }
}

/// Why a job's texts could not be read.
enum Unreadable {
    Redis(inferq_shared::queue::QueueError),
    Malformed(String),
}

/// The result document, in the order of the texts.
fn encode(
    output: Output,
    format: EncodingFormat,
    ids: Option<Vec<String>>,
) -> serde_json::Result<Vec<u8>> {
    let truncated = output
        .truncated
        .iter()
        .enumerate()
        .filter(|(_, t)| **t)
        .map(|(i, _)| i as u32)
        .collect();
    let result = EmbeddingResult {
        model: pipeline::EMBEDDING_MODEL.to_owned(),
        dimensions: DIMENSIONS,
        embeddings: output
            .vectors
            .chunks_exact(DIMENSIONS)
            .map(|v| Embedding::encode(v, format))
            .collect(),
        total_tokens: output.token_counts.iter().map(|&n| u64::from(n)).sum(),
        token_counts: output.token_counts,
        truncated,
        ids,
    };
    serde_json::to_vec(&result)
}

impl Kind for EmbeddingJobs {
    type Permit = OwnedSemaphorePermit;

    async fn acquire(&self) -> OwnedSemaphorePermit {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        while self.engine.backlog() >= BACKLOG_LOW {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        permit
    }

    /// One job per permit: no start shares another's.
    fn idle(&self) -> usize {
        0
    }

    fn per_permit(&self, _queue: usize) -> usize {
        1
    }

    fn batch_delay(&self, _queue: usize) -> Duration {
        Duration::ZERO
    }

    fn share(&self, deliveries: Vec<Delivery>, _idle: usize) -> Vec<Vec<Delivery>> {
        let mut parts: Vec<Vec<Delivery>> = deliveries.into_iter().map(|d| vec![d]).collect();
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        parts
    }

    fn run(
        &self,
        queue: usize,
        attempts: Vec<Attempt>,
        permit: OwnedSemaphorePermit,
        settle: &Settle,
        tasks: &mut JoinSet<()>,
    ) {
        // `share` gives each start one job; the permit goes with it.
        let mut permit = Some(permit);
        for attempt in attempts {
            let (this, settle, permit) = (self.clone(), settle.clone(), permit.take());
            tasks.spawn(async move {
                let _permit = permit;
                this.attempt(queue, attempt, settle).await;
            });
        }
    }
}

/// Drops the job's texts from the engine when dropped (the job ended, failed or was aborted).
struct CancelOnDrop(Arc<super::pool::JobTexts>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ended::Outcome(_) => "Outcome",
            Ended::HandBack => "HandBack",
        })
    }
}
