//! The speech pipeline's side of a worker: its own read loop on the pipeline's stream (as
//! many recordings at once as the configured concurrency), and per job a decoder on a
//! blocking thread feeding the shared [`Engine`], a progress writer (fenced, so a cancelled
//! or taken-over attempt learns it must stop), and the completion. Leases work as for model
//! jobs: renewed while the job runs; a killed worker's job is reclaimed and redone from the
//! start by another.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use inferq_shared::audio::{AudioError, Decoder};
use inferq_shared::job::{ErrorCode, JobError};
use inferq_shared::pipeline::{PipelineJob, SpeechResult, round_ms};
use inferq_shared::queue::{Completion, Delivery, Entry, Outcome, Queue, Retention};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::engine::{CHUNK_SAMPLES, Engine, Feed};
use super::fetch::{self, Missing};
use super::source::UploadSource;
use super::vad;
use anyhow::Context;
use inferq_shared::pipeline;
use inferq_shared::queue::keys;

use crate::Config;
use crate::consumer::{Backoff, record};
use crate::egress::Egress;
use crate::lease::{self, Leases};
use crate::models::ModelSpec;
use crate::stats::Counters;

/// How often a running job's progress is written (the issue asks for at least once a second).
const PROGRESS_EVERY: Duration = Duration::from_millis(400);

/// Longest a blocking read of the pipeline stream waits, which bounds how late shutdown is
/// noticed.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// What the speech read loop needs.
#[derive(Debug, Clone)]
pub(crate) struct SpeechWorker {
    pub(crate) queue: Queue,
    /// Blocking reads, on a connection of their own.
    pub(crate) reader: Queue,
    pub(crate) engine: Engine,
    pub(crate) leases: Arc<Leases>,
    /// The pipeline's queue name (`pipeline:speech_segments`).
    pub(crate) name: String,
    pub(crate) consumer: String,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retention: Retention,
    pub(crate) concurrency: usize,
    /// This worker's job counts (`GET /workers`, metrics), shared with model jobs.
    pub(crate) counters: Arc<Counters>,
    /// Fetches recordings given by URL.
    pub(crate) egress: Egress,
}

/// How one attempt ended.
enum Ended {
    Outcome(Outcome),
    /// Not this attempt's to record (Redis trouble reading the upload, worker stopping): the
    /// job goes back to the queue.
    HandBack,
}

impl SpeechWorker {
    /// The speech pipeline of a worker that serves its model (`None` otherwise): starts the
    /// engine threads and connects the pipeline's blocking reader.
    pub(crate) async fn new(
        config: &Config,
        models: &[ModelSpec],
        queue: Queue,
        consumer: String,
        retention: Retention,
        counters: Arc<Counters>,
        egress: Egress,
    ) -> anyhow::Result<Option<Self>> {
        let Some(model) = models
            .iter()
            .find(|m| m.info.name == pipeline::SPEECH_MODEL)
        else {
            return Ok(None);
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let engine = Engine::start(
            &model.path,
            config.speech_threads.unwrap_or(cores),
            config.speech_max_batch,
        )
        .context("starting the speech engine")?;
        Ok(Some(Self {
            reader: Queue::connect(&config.redis, READ_BLOCK).await?,
            queue,
            engine,
            leases: Leases::new(1),
            name: keys::pipeline_queue(pipeline::SPEECH_SEGMENTS),
            consumer,
            lease: config.lease(),
            max_attempts: config.max_attempts,
            retention,
            concurrency: config.speech_concurrency,
            counters,
            egress,
        }))
    }

    /// Runs the pipeline on a task of its own until `stop`: creates its stream's group
    /// (retrying while Redis is away), renews its leases, reads and runs jobs.
    pub(crate) fn spawn(self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            while let Err(e) = self.queue.ensure_group(&self.name).await {
                if *stop.borrow() {
                    return;
                }
                tracing::warn!(error = %e, "redis not ready for the speech pipeline; retrying");
                backoff.wait(&mut stop).await;
            }
            let renewal = lease::spawn_renewal(
                self.queue.clone(),
                self.leases.clone(),
                Arc::from(vec![self.name.clone()]),
                self.consumer.clone(),
                self.lease,
            );
            tracing::info!(pipeline = %self.name, concurrency = self.concurrency, "serving the speech pipeline");
            self.run(stop).await;
            renewal.abort();
        })
    }

    /// Reads and runs speech jobs until `stop`; then hands running ones back to the queue
    /// (a recording can take minutes; another worker redoes it from the start).
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut last_reclaim: Option<Instant> = None;
        while !*stop.borrow() {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("never closed"),
                _ = stop.wait_for(|s| *s) => break,
            };
            let got = if last_reclaim.is_none_or(|t| t.elapsed() >= self.lease / 2) {
                last_reclaim = Some(Instant::now());
                self.reader
                    .reclaim(&self.consumer, &self.name, self.lease, 1)
                    .await
            } else {
                Ok(Vec::new())
            };
            let got = match got {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => {
                    self.reader
                        .read(&self.consumer, &self.name, 1, Some(READ_BLOCK))
                        .await
                }
                Err(e) => Err(e),
            };
            let entries = match got {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "reading speech jobs failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut permit = Some(permit);
            for e in entries {
                match e {
                    Entry::Job(d) => {
                        if let Some(p) = permit.take() {
                            self.begin(d, p, &mut tasks).await;
                        }
                    }
                    Entry::Malformed { entry, job } => {
                        let _ = self
                            .queue
                            .set_aside(&self.name, &[(entry, job)], self.retention)
                            .await;
                    }
                }
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let held = self.leases.take_all();
        if let Some(entries) = held.first()
            && !entries.is_empty()
        {
            match self.queue.release(&self.name, entries).await {
                Ok(n) => tracing::info!(released = n, "handed speech jobs back to the queue"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not hand speech jobs back; they will be reclaimed after the lease")
                }
            }
        }
    }

    /// Starts the attempt and spawns the job; a delivery not to run is dropped.
    async fn begin(&self, d: Delivery, permit: OwnedSemaphorePermit, tasks: &mut JoinSet<()>) {
        self.leases.hold(0, std::slice::from_ref(&d));
        let token = loop {
            match self
                .queue
                .start(
                    &self.name,
                    &self.consumer,
                    std::slice::from_ref(&d),
                    self.max_attempts,
                    self.retention,
                )
                .await
            {
                Ok(t) => break t.first().copied().unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "starting a speech job failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        self.leases.started(0, &d.entry, d.job, token);
        if token == lease::UNSTARTED {
            return;
        }
        let this = self.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let span = tracing::info_span!("job", job_id = %d.job, pipeline = %this.name, attempt = token);
            let ended = this.execute(&d, token).instrument(span).await;
            match ended {
                Ended::Outcome(outcome) => {
                    let c = Completion {
                        job: d.job,
                        entry: d.entry.clone(),
                        token,
                        outcome,
                    };
                    record(&this.queue, &this.name, &[c], this.retention, &this.counters).await;
                }
                Ended::HandBack => {
                    if let Err(e) = this
                        .queue
                        .release(&this.name, &[(d.job, d.entry.clone(), token)])
                        .await
                    {
                        tracing::warn!(error = %e, "handing a speech job back failed; it will be reclaimed after the lease");
                    }
                }
            }
            this.leases.finished(0, &d.entry, token);
        });
    }

    /// Runs one recording: decode on a blocking thread into the engine, write progress as it
    /// goes, and turn the probabilities into segments.
    async fn execute(&self, d: &Delivery, token: u64) -> Ended {
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
