//! all-MiniLM-L6-v2 over the texts of every running embedding job: engine threads (each
//! with its own ONNX Runtime session and tokenizer) share one [`Pool`] and take turns at its
//! work, tokenizing texts or running a run of them; each run's token vectors are mean-pooled
//! over the text's tokens and L2-normalised into its job's slot.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use inferq_shared::embedding::DIMENSIONS;
use ort::session::{Session, SessionInputValue};
use ort::value::Value;
use tokio::sync::oneshot;

use super::pool::{Item, JobTexts, Output, Pool, Work};
use super::tokens::{TextTokenizer, Tokens};
use crate::infer::runtime::open_session;

/// The engine threads and their pool.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pool: Mutex<Pool>,
    /// Signalled when work arrives (a job, tokenized texts).
    wake: Condvar,
    /// Most rows × longest row in one run.
    budget: usize,
    stats: Stats,
}

/// Model calls and the texts they ran: texts / calls is the batching achieved.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) calls: AtomicU64,
    pub(crate) texts: AtomicU64,
    /// Token slots run, padding included; `tokens` of them were real.
    pub(crate) slots: AtomicU64,
    pub(crate) tokens: AtomicU64,
}

/// A job's handle on its texts in the engine.
#[derive(Debug)]
pub(crate) struct Embedding {
    pub(crate) job: Arc<JobTexts>,
    pub(crate) done: oneshot::Receiver<Result<Output, String>>,
}

impl Engine {
    /// Starts `threads` engine threads over the model in `dir` (`model.onnx`,
    /// `tokenizer.json`), each with one session (one intra-op thread).
    pub(crate) fn start(dir: &Path, threads: usize, budget: usize) -> anyhow::Result<Self> {
        let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json"))?;
        let shared = Arc::new(Shared {
            pool: Mutex::new(Pool::default()),
            wake: Condvar::new(),
            budget,
            stats: Stats::default(),
        });
        for i in 0..threads.max(1) {
            let session = open_session(&dir.join("model.onnx"), 1)?;
            let (shared, tokenizer) = (shared.clone(), tokenizer.clone());
            std::thread::Builder::new()
                .name(format!("embed-{i}"))
                .spawn(move || engine_thread(session, &tokenizer, &shared))?;
        }
        Ok(Self { shared })
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Texts in the pool not yet embedded.
    pub(crate) fn backlog(&self) -> usize {
        self.shared
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .backlog()
    }

    /// Adds a job's texts to the pool.
    pub(crate) fn embed(&self, texts: Vec<String>) -> Embedding {
        let (job, done) = JobTexts::new(texts);
        self.shared
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(job.clone());
        self.shared.wake.notify_all();
        Embedding { job, done }
    }
}

fn engine_thread(mut session: Session, tokenizer: &TextTokenizer, shared: &Shared) {
    loop {
        let work = {
            let mut pool = shared.pool.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(work) = pool.next(shared.budget) {
                    break work;
                }
                pool = shared.wake.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
        };
        match work {
            Work::Tokenize(job, range) => {
                let start = range.start;
                let tokens: Result<Vec<Tokens>, String> =
                    range.map(|i| tokenizer.encode(&job.texts[i])).collect();
                match tokens {
                    Ok(tokens) => {
                        let mut pool = shared.pool.lock().unwrap_or_else(|e| e.into_inner());
                        pool.put(&job, start, tokens);
                        drop(pool);
                        shared.wake.notify_all();
                    }
                    Err(e) => job.fail(e),
                }
            }
            Work::Run(items) => {
                // A panic in the ONNX Runtime glue fails this run's jobs, not the thread.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&mut session, &items, &shared.stats)
                }))
                .unwrap_or_else(|p| {
                    Err(ort::Error::new(format!(
                        "panicked: {}",
                        crate::infer::pool::panic_message(p.as_ref())
                    )))
                });
                match ran {
                    Ok(vectors) => {
                        for (item, v) in items.iter().zip(vectors.chunks_exact(DIMENSIONS)) {
                            item.job.record(item.index, v, &item.tokens);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, texts = items.len(), "embedding model run failed");
                        for item in &items {
                            item.job.fail(format!("the embedding model failed: {e}"));
                        }
                    }
                }
            }
        }
    }
}

/// One run: the texts padded to the longest, through the model, then each text's token
/// vectors averaged over its own tokens and L2-normalised. Returns `items × DIMENSIONS`.
fn run(session: &mut Session, items: &[Item], stats: &Stats) -> ort::Result<Vec<f32>> {
    let rows = items.len();
    let width = items.iter().map(|i| i.tokens.ids.len()).max().unwrap_or(0);
    let mut ids = vec![0i64; rows * width];
    let mut mask = vec![0i64; rows * width];
    let mut types = vec![0i64; rows * width];
    for (r, item) in items.iter().enumerate() {
        let row = r * width;
        for (t, (&id, &ty)) in item
            .tokens
            .ids
            .iter()
            .zip(&item.tokens.type_ids)
            .enumerate()
        {
            ids[row + t] = i64::from(id);
            types[row + t] = i64::from(ty);
            mask[row + t] = 1;
        }
    }
    let shape = vec![rows as i64, width as i64];
    let input = |data: Vec<i64>| -> ort::Result<SessionInputValue<'static>> {
        Ok(Value::from_array((shape.clone(), data))?.into_dyn().into())
    };
    let inputs: Vec<(String, SessionInputValue<'_>)> = vec![
        ("input_ids".into(), input(ids)?),
        ("attention_mask".into(), input(mask)?),
        ("token_type_ids".into(), input(types)?),
    ];
    let outputs = session.run(inputs)?;
    let (out_shape, hidden) = outputs["last_hidden_state"].try_extract_tensor::<f32>()?;
    if out_shape.len() != 3 || out_shape[2] as usize != DIMENSIONS {
        return Err(ort::Error::new(format!(
            "last_hidden_state has shape {out_shape:?}, expected [{rows}, {width}, {DIMENSIONS}]"
        )));
    }
    let mut vectors = vec![0f32; rows * DIMENSIONS];
    let mut tokens = 0;
    for (r, item) in items.iter().enumerate() {
        let n = item.tokens.ids.len();
        tokens += n;
        let v = &mut vectors[r * DIMENSIONS..(r + 1) * DIMENSIONS];
        for t in 0..n {
            let h = &hidden[(r * width + t) * DIMENSIONS..(r * width + t + 1) * DIMENSIONS];
            for (a, b) in v.iter_mut().zip(h) {
                *a += b;
            }
        }
        let count = n.max(1) as f32;
        v.iter_mut().for_each(|a| *a /= count);
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|a| *a /= norm);
    }
    stats.calls.fetch_add(1, Ordering::Relaxed);
    stats.texts.fetch_add(rows as u64, Ordering::Relaxed);
    stats
        .slots
        .fetch_add((rows * width) as u64, Ordering::Relaxed);
    stats.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
    Ok(vectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::runtime::init_runtime;

    fn engine(budget: usize) -> Engine {
        init_runtime(Path::new(env!("ORT_DYLIB_PATH"))).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2");
        Engine::start(&dir, 2, budget).unwrap()
    }

    fn embed(e: &Engine, texts: &[String]) -> Output {
        e.embed(texts.to_vec())
            .done
            .blocking_recv()
            .unwrap()
            .unwrap()
    }

    /// A text embedded alone equals the same text embedded among others of many lengths, in
    /// several concurrent jobs.
    #[test]
    fn pooled_runs_match_texts_run_alone() {
        let texts: Vec<String> = (0..40)
            .map(|k| format!("text {k} {}", "with some more words ".repeat(k % 13)))
            .collect();
        let alone: Vec<Output> = {
            let e = engine(1);
            texts
                .iter()
                .map(|t| embed(&e, std::slice::from_ref(t)))
                .collect()
        };
        let e = engine(2048);
        let jobs: Vec<Embedding> = texts.chunks(7).map(|c| e.embed(c.to_vec())).collect();
        let mut k = 0;
        for job in jobs {
            let out = job.done.blocking_recv().unwrap().unwrap();
            for (i, v) in out.vectors.chunks_exact(DIMENSIONS).enumerate() {
                let a = &alone[k].vectors;
                let diff = v
                    .iter()
                    .zip(a)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-5, "text {k}: {diff}");
                assert_eq!(out.token_counts[i], alone[k].token_counts[0]);
                k += 1;
            }
        }
        let s = e.stats();
        assert!(s.texts.load(Ordering::Relaxed) > s.calls.load(Ordering::Relaxed));
    }
}
