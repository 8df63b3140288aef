//! Silero VAD over many recordings at once: each engine thread owns one ONNX Runtime session
//! and the recordings assigned to it, and runs the next window of every recording that has
//! one ready in ONE session call. The model's state has a batch axis (`[2, batch, 128]`), so
//! each recording keeps its own state row between calls; recordings join and leave the batch
//! as they start and end. Samples arrive from each recording's decoder through a small
//! bounded channel, so a fast decoder waits rather than fills memory.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use ort::session::Session;
use tokio::sync::oneshot;

use super::stream::{Batch, Probabilities, Stream};
use super::vad::{StreamState, window_size};
use crate::infer::runtime::open_session;

/// A recording's windows are fed in chunks of about this many samples.
pub(crate) const CHUNK_SAMPLES: usize = 16 * 1024;

/// Chunks a decoder may be ahead of the engine.
const CHUNKS_AHEAD: usize = 4;

/// The sending side of a recording: its decoder pushes samples here.
#[derive(Debug)]
pub(crate) struct Feed {
    tx: mpsc::SyncSender<Vec<f32>>,
    wake: mpsc::Sender<Msg>,
}

impl Feed {
    /// Hands samples to the engine, waiting while it is [`CHUNKS_AHEAD`] chunks behind;
    /// `false` when the recording was dropped (cancelled or failed).
    pub(crate) fn send(&self, samples: Vec<f32>) -> bool {
        let ok = self.tx.send(samples).is_ok();
        let _ = self.wake.send(Msg::Wake);
        ok
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // The channel closes with this; tell the engine to look (the recording has ended).
        let _ = self.wake.send(Msg::Wake);
    }
}

/// The job's handle on a recording in the engine.
#[derive(Debug)]
pub(crate) struct Recording {
    /// Samples run through the model so far.
    pub(crate) processed: Arc<AtomicU64>,
    /// Set to drop the recording from the engine (and stop its decoder).
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) done: oneshot::Receiver<Result<Probabilities, String>>,
}

enum Msg {
    Open(Stream),
    Wake,
}

/// The engine threads.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    threads: Arc<[(mpsc::Sender<Msg>, Arc<AtomicUsize>)]>,
    stats: Arc<Stats>,
}

/// Model calls and the windows they ran: windows / calls is the batching achieved.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) calls: AtomicU64,
    pub(crate) windows: AtomicU64,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Open(_) => "Open",
            Msg::Wake => "Wake",
        })
    }
}

impl Engine {
    /// Starts `threads` engine threads, each with its own session of the model at `path`
    /// (one intra-op thread each) running up to `max_batch` recordings per call.
    pub(crate) fn start(path: &Path, threads: usize, max_batch: usize) -> anyhow::Result<Self> {
        let mut handles = Vec::new();
        let stats = Arc::new(Stats::default());
        for i in 0..threads.max(1) {
            let session = open_session(path, 1)?;
            let (tx, rx) = mpsc::channel();
            let load = Arc::new(AtomicUsize::new(0));
            let (thread_load, stats) = (load.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("speech-{i}"))
                .spawn(move || {
                    engine_thread(session, &rx, max_batch.max(1), &thread_load, &stats)
                })?;
            handles.push((tx, load));
        }
        Ok(Self {
            threads: handles.into(),
            stats,
        })
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Adds a recording to the least loaded thread; returns its feed (for the decoder) and
    /// the job's handle.
    pub(crate) fn open(&self, sampling_rate: u32) -> (Feed, Recording) {
        let (tx, load) = self
            .threads
            .iter()
            .min_by_key(|(_, load)| load.load(Ordering::Relaxed))
            .expect("at least one engine thread");
        load.fetch_add(1, Ordering::Relaxed);
        let (chunks_tx, chunks_rx) = mpsc::sync_channel(CHUNKS_AHEAD);
        let (done_tx, done_rx) = oneshot::channel();
        let processed = Arc::new(AtomicU64::new(0));
        let cancel = Arc::new(AtomicBool::new(false));
        let stream = Stream {
            sampling_rate,
            rx: chunks_rx,
            buffer: VecDeque::with_capacity(CHUNK_SAMPLES + window_size(sampling_rate)),
            ended: false,
            state: StreamState::new(sampling_rate),
            probs: Vec::new(),
            samples: 0,
            processed: processed.clone(),
            cancel: cancel.clone(),
            done: Some(done_tx),
        };
        if tx.send(Msg::Open(stream)).is_err() {
            // The thread is gone: the recording fails at once (its sender was dropped).
            load.fetch_sub(1, Ordering::Relaxed);
        }
        (
            Feed {
                tx: chunks_tx,
                wake: tx.clone(),
            },
            Recording {
                processed,
                cancel,
                done: done_rx,
            },
        )
    }
}

/// Runs windows until the engine is dropped. Each round: take in new recordings, pull
/// samples, finish the recordings that ended, run one window of every ready recording (per
/// sampling rate, `max_batch` at a time); sleep on the inbox when nothing is ready.
fn engine_thread(
    mut session: Session,
    inbox: &mpsc::Receiver<Msg>,
    max_batch: usize,
    load: &AtomicUsize,
    stats: &Stats,
) {
    let mut streams: Vec<Stream> = Vec::new();
    let mut batch = Batch::default();
    loop {
        let mut msg = if streams.is_empty() {
            match inbox.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            None
        };
        loop {
            match msg.take() {
                Some(Msg::Open(s)) => streams.push(s),
                Some(Msg::Wake) => {}
                None => {}
            }
            match inbox.try_recv() {
                Ok(m) => msg = Some(m),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) if streams.is_empty() => return,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        streams.retain_mut(|s| {
            s.fill();
            let cancelled = s.cancel.load(Ordering::Relaxed);
            let finished = s.ended && s.buffer.is_empty();
            if cancelled || finished {
                if finished && let Some(done) = s.done.take() {
                    let _ = done.send(Ok(Probabilities {
                        probs: std::mem::take(&mut s.probs),
                        samples: s.samples,
                    }));
                }
                load.fetch_sub(1, Ordering::Relaxed);
                return false;
            }
            true
        });
        let mut ran = false;
        for rate in [16000, 8000] {
            let ready: Vec<usize> = (0..streams.len())
                .filter(|&i| streams[i].sampling_rate == rate && streams[i].ready())
                .collect();
            for group in ready.chunks(max_batch) {
                ran = true;
                stats.calls.fetch_add(1, Ordering::Relaxed);
                stats
                    .windows
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                // A panic in the ONNX Runtime glue fails this batch's recordings, not the
                // thread (which serves every later recording assigned to it).
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    batch.run(&mut session, &mut streams, group, rate)
                }))
                .unwrap_or_else(|p| Err(panicked(p.as_ref())));
                if let Err(e) = run {
                    tracing::error!(error = %e, recordings = group.len(), "speech model run failed");
                    for &i in group {
                        if let Some(done) = streams[i].done.take() {
                            let _ = done.send(Err(format!("the speech model failed: {e}")));
                        }
                        streams[i].cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        if !ran && !streams.is_empty() {
            // Nothing buffered: wait for a decoder (each chunk sends a wake-up), or look
            // again shortly for cancellations.
            match inbox.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Open(s)) => streams.push(s),
                Ok(Msg::Wake) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
    }
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> ort::Error {
    ort::Error::new(format!(
        "panicked: {}",
        crate::infer::pool::panic_message(panic)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::runtime::init_runtime;

    fn engine(threads: usize) -> Engine {
        init_runtime(Path::new(env!("ORT_DYLIB_PATH"))).unwrap();
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/silero_vad/model.onnx");
        Engine::start(&model, threads, 32).unwrap()
    }

    /// Distinct signals of distinct lengths: tones, a chirp, noise, silence.
    fn signal(k: usize) -> Vec<f32> {
        let n = 16000 * (2 + k) + 123 * k;
        let mut seed = 1 + k as u32;
        (0..n)
            .map(|i| {
                let t = i as f32 / 16000.0;
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (seed >> 9) as f32 / (1 << 23) as f32 - 0.5;
                match k % 4 {
                    0 => 0.4 * (2.0 * std::f32::consts::PI * 220.0 * t).sin(),
                    1 => 0.3 * (2.0 * std::f32::consts::PI * (100.0 + 400.0 * t) * t).sin(),
                    2 => 0.2 * noise,
                    _ => 0.0,
                }
            })
            .collect()
    }

    fn feed(engine: &Engine, samples: Vec<f32>) -> (std::thread::JoinHandle<()>, Recording) {
        let (feed, recording) = engine.open(16000);
        let t = std::thread::spawn(move || {
            for c in samples.chunks(CHUNK_SAMPLES / 3) {
                feed.send(c.to_vec());
            }
        });
        (t, recording)
    }

    fn wait(r: Recording) -> Probabilities {
        r.done.blocking_recv().unwrap().unwrap()
    }

    /// Recordings batched together get exactly the probabilities each gets alone: their
    /// state rows and contexts never mix, and they join and leave the batch freely.
    #[test]
    fn batched_recordings_match_single_stream_runs() {
        let alone: Vec<Probabilities> = (0..4)
            .map(|k| {
                let e = engine(1);
                let (t, r) = feed(&e, signal(k));
                t.join().unwrap();
                wait(r)
            })
            .collect();
        let e = engine(1);
        let runs: Vec<_> = (0..4).map(|k| feed(&e, signal(k))).collect();
        for (k, (t, r)) in runs.into_iter().enumerate() {
            t.join().unwrap();
            let got = wait(r);
            assert_eq!(got.samples, alone[k].samples);
            assert_eq!(got.probs.len(), alone[k].probs.len());
            for (a, b) in got.probs.iter().zip(&alone[k].probs) {
                assert!((a - b).abs() < 1e-5, "recording {k}: {a} vs {b}");
            }
        }
        let calls = e.stats().calls.load(Ordering::Relaxed);
        let windows = e.stats().windows.load(Ordering::Relaxed);
        assert!(
            windows as f64 / calls as f64 > 1.5,
            "{windows} windows in {calls} calls"
        );
    }
}
