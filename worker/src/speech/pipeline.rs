//! The speech pipeline as a kind of job for the consume loop: as many recordings at once as the
//! configured concurrency, one per start. Per job a decoder on a blocking thread feeds the
//! shared [`Engine`], a progress writer runs (fenced, so a cancelled or taken-over attempt
//! learns it must stop), and the outcome is settled. Leases work as for model jobs: renewed
//! while the job runs; a killed worker's job is reclaimed and redone from the start by another.
//! On shutdown running recordings go straight back to the queue (no grace period: a recording
//! can take minutes; another worker redoes it from the start).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use inferq_shared::audio::{AudioError, Decoder};
use inferq_shared::job::{ErrorCode, JobError};
use inferq_shared::pipeline::{self, PipelineJob, SpeechResult, round_ms};
use inferq_shared::queue::{Delivery, Outcome, Queue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::engine::{CHUNK_SAMPLES, Engine, Feed};
use super::fetch::{self, Missing};
use super::source::UploadSource;
use super::vad;
use crate::consume::{Attempt, Fence, Kind, Settle};
use crate::egress::Egress;
use crate::infer::models::ModelSpec;

/// How often a running job's progress is written (the issue asks for at least once a second).
const PROGRESS_EVERY: Duration = Duration::from_millis(400);

/// The speech pipeline of a worker.
#[derive(Debug, Clone)]
pub(crate) struct SpeechJobs {
    /// Uploads, progress.
    queue: Queue,
    engine: Engine,
    /// Recordings running at once: one permit each.
    slots: Arc<Semaphore>,
    /// Fetches recordings given by URL.
    egress: Egress,
}

/// How one attempt ended.
enum Ended {
    Outcome(Outcome),
    /// Not this attempt's to record (Redis trouble reading the upload, worker stopping): the
    /// job goes back to the queue.
    HandBack,
}

impl SpeechJobs {
    /// The speech pipeline of a worker that serves its model (`None` otherwise): starts the
    /// engine threads (`threads`, each with its own session, running up to `max_batch`
    /// recordings per call).
    pub(crate) fn new(
        models: &[ModelSpec],
        threads: Option<usize>,
        max_batch: usize,
        concurrency: usize,
        queue: Queue,
        egress: Egress,
    ) -> anyhow::Result<Option<Self>> {
        let Some(model) = models
            .iter()
            .find(|m| m.info.name == pipeline::SPEECH_MODEL)
        else {
            return Ok(None);
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let engine = Engine::start(&model.path, threads.unwrap_or(cores), max_batch)
            .context("starting the speech engine")?;
        Ok(Some(Self {
            queue,
            engine,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            egress,
        }))
    }

    /// Runs one attempt and settles it: its outcome is recorded, or it goes back to the queue.
    async fn attempt(self, queue: usize, attempt: Attempt, settle: Settle) {
        let (d, fence) = (&attempt.delivery, attempt.fence);
        let span = tracing::info_span!("job", job_id = %d.job, pipeline = %settle.name(queue), attempt = fence.attempt());
        let ended = self.execute(d, fence).instrument(span).await;
        match ended {
            Ended::Outcome(outcome) => {
                settle
                    .complete(queue, vec![(attempt.lease(), outcome)])
                    .await;
            }
            Ended::HandBack => settle.hand_back(queue, vec![attempt.lease()]).await,
        }
    }

    /// Runs one recording: decode on a blocking thread into the engine, write progress as it
    /// goes, and turn the probabilities into segments.
    async fn execute(&self, d: &Delivery, fence: Fence) -> Ended {
        let token = fence.attempt();
        let fail =
            |code, message: String| Ended::Outcome(Outcome::Failed(JobError::new(code, message)));
        let job: PipelineJob = match serde_json::from_slice(&d.payload) {
            Ok(j) => j,
            Err(e) => {
                return fail(
                    ErrorCode::InvalidRequest,
                    format!("unreadable pipeline job: {e}"),
                );
            }
        };
        if let Some(url) = &job.audio_url {
            match fetch::into_upload(
                &self.egress.with_allow(d.fetch_allow.clone()),
                &self.queue,
                d.job,
                url,
            )
            .await
            {
                Ok(()) => {}
                Err(Missing::Failed(e)) => return Ended::Outcome(Outcome::Failed(e)),
                Err(Missing::Redis(e)) => {
                    tracing::warn!(error = %e, "storing a fetched recording failed; handing the job back");
                    return Ended::HandBack;
                }
            }
        }
        let settings = job.settings;
        let rate = settings.sampling_rate;
        let len = match self.queue.upload_len(d.job).await {
            Ok(0) => {
                return fail(
                    ErrorCode::InvalidAudio,
                    "the uploaded file is gone (it expired before the job ran)".into(),
                );
            }
            Ok(n) => n,
            Err(_) => return Ended::HandBack,
        };
        let (feed, mut recording) = self.engine.open(rate);
        let (total_tx, total_rx) = watch::channel(None);
        let source = UploadSource::new(
            self.queue.clone(),
            tokio::runtime::Handle::current(),
            d.job,
            len,
        );
        let cancel = recording.cancel.clone();
        let decode = tokio::task::spawn_blocking(move || decode(source, rate, feed, &total_tx));
        // Stops the decoder and drops the recording from the engine however this ends.
        let _guard = CancelOnDrop(cancel.clone());

        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut last_done = -1.0;
        let probs = loop {
            tokio::select! {
                r = &mut recording.done => break r,
                _ = tick.tick() => {
                    let done = recording.processed.load(Ordering::Relaxed) as f64 / f64::from(rate);
                    let total: Option<f64> = *total_rx.borrow();
                    // Never ahead of the total the header declared.
                    let done = round_ms(total.map_or(done, |t| done.min(t)));
                    if done == last_done && last_done >= 0.0 {
                        continue;
                    }
                    last_done = done;
                    match self.queue.progress(d.job, token, done, total.map(round_ms)).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::info!(job_id = %d.job, "speech job cancelled or taken over; stopping");
                            cancel.store(true, Ordering::Relaxed);
                            let _ = decode.await;
                            return fail(ErrorCode::Internal, "stopped: the job was cancelled or taken over".into());
                        }
                        Err(e) => tracing::warn!(error = %e, "writing progress failed"),
                    }
                }
            }
        };
        let decoded = decode.await;
        match decoded {
            Ok(Ok(())) => {}
            Ok(Err(AudioError::Read(m))) => {
                // A cancellation deletes the upload under the decoder: ask whether the
                // attempt still owns a running job before blaming Redis.
                let still_ours = self
                    .queue
                    .progress(d.job, token, last_done.max(0.0), None)
                    .await;
                if let Ok(false) = still_ours {
                    tracing::info!(job_id = %d.job, "speech job cancelled or taken over; stopping");
                    return fail(
                        ErrorCode::Internal,
                        "stopped: the job was cancelled or taken over".into(),
                    );
                }
                tracing::warn!(job_id = %d.job, error = %m, "reading the upload failed; handing the job back");
                return Ended::HandBack;
            }
            Ok(Err(e)) => return fail(ErrorCode::InvalidAudio, e.to_string()),
            Err(e) => return fail(ErrorCode::Internal, format!("the decoder stopped: {e}")),
        }
        let probs = match probs {
            Ok(Ok(p)) => p,
            Ok(Err(m)) => return fail(ErrorCode::Internal, m),
            Err(_) => return fail(ErrorCode::Internal, "the speech engine stopped".into()),
        };
        let stats = self.engine.stats();
        tracing::debug!(
            job_id = %d.job,
            windows = probs.probs.len(),
            // Since the worker started, over all recordings: windows per call is the batching.
            engine_calls = stats.calls.load(Ordering::Relaxed),
            engine_windows = stats.windows.load(Ordering::Relaxed),
            "speech job decoded and run"
        );
        let speeches = vad::speech_timestamps(&probs.probs, &settings, probs.samples);
        let duration = round_ms(probs.samples as f64 / f64::from(rate));
        let result = SpeechResult {
            segments: vad::to_seconds(&speeches, rate, probs.samples),
            duration,
            sample_rate: rate,
        };
        if let Err(e) = self
            .queue
            .progress(d.job, token, duration, Some(duration))
            .await
        {
            tracing::warn!(error = %e, "writing the final progress failed");
        }
        match serde_json::to_vec(&result) {
            Ok(bytes) => Ended::Outcome(Outcome::Succeeded(bytes)),
            Err(e) => fail(ErrorCode::Internal, format!("encoding the result: {e}")),
        }
    }
}

impl Kind for SpeechJobs {
    type Permit = OwnedSemaphorePermit;

    async fn acquire(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// One recording per permit: no start shares another's.
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
        // `share` gives each start one recording; the permit goes with it.
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

/// Sets the recording's cancel flag when dropped (the job ended, failed or was aborted).
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The decoder thread: opens the file, publishes the declared duration, and feeds the
/// engine chunk by chunk until the end (or until the engine drops the recording).
fn decode(
    source: UploadSource,
    rate: u32,
    feed: Feed,
    total: &watch::Sender<Option<f64>>,
) -> Result<(), AudioError> {
    let mut decoder = Decoder::open(Box::new(source), rate)?;
    let _ = total.send(decoder.declared_seconds());
    let mut chunk = Vec::with_capacity(CHUNK_SAMPLES + 8192);
    loop {
        let more = decoder.next_chunk(&mut chunk)?;
        if chunk.len() >= CHUNK_SAMPLES || (!more && !chunk.is_empty()) {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_SAMPLES + 8192));
            if !feed.send(full) {
                // Dropped by the engine: cancelled.
                return Ok(());
            }
        }
        if !more {
            let _ = total.send(Some(decoder.decoded_seconds()));
            return Ok(());
        }
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
