//! The texts of every running embedding job, pooled, and how ONNX Runtime runs are cut from
//! them. Jobs join with all their texts untokenized; engine threads tokenize them a chunk at a
//! time, the jobs taking turns, into a pool of tokenized texts. A run is cut from the pool by a
//! token budget (rows × longest row): the texts sorted by length, the run grows around the
//! pool's oldest text to the neighbours that waste the least padding, so short texts share
//! runs, long ones never pad each other, and no text waits behind a stream of newer ones.
//! Each vector goes back to its job's slot by index, so a job's results keep its order.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use inferq_shared::embedding::{DIMENSIONS, MAX_TOKENS};
use tokio::sync::oneshot;

use super::tokens::Tokens;

/// Texts tokenized at a time by one engine thread, before the jobs' turn passes on.
const CHUNK: usize = 64;

/// The pool is filled to this many budgets' worth of tokens before a run is cut while texts
/// wait to be tokenized: enough texts for sorting by length to pay.
const FILL: usize = 16;

/// Most rows in one run, however short the texts.
const MAX_ROWS: usize = 1024;

/// A job's vectors and token counts, by text index.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// `texts × DIMENSIONS` numbers, row-major.
    pub(crate) vectors: Vec<f32>,
    pub(crate) token_counts: Vec<u32>,
    pub(crate) truncated: Vec<bool>,
}

/// One job's texts inside the engine, and where their results go.
#[derive(Debug)]
pub(crate) struct JobTexts {
    pub(crate) texts: Vec<String>,
    /// Set to drop the job's texts from the engine (cancelled, failed, or its attempt ended).
    pub(crate) cancel: AtomicBool,
    /// Texts embedded so far (the job's progress).
    pub(crate) done: AtomicUsize,
    out: Mutex<Output>,
    finished: Mutex<Option<oneshot::Sender<Result<Output, String>>>>,
}

impl JobTexts {
    /// A job of `texts` and the receiver of its outcome.
    pub(crate) fn new(
        texts: Vec<String>,
    ) -> (Arc<Self>, oneshot::Receiver<Result<Output, String>>) {
        let n = texts.len();
        let (tx, rx) = oneshot::channel();
        let job = Arc::new(Self {
            texts,
            cancel: AtomicBool::new(false),
            done: AtomicUsize::new(0),
            out: Mutex::new(Output {
                vectors: vec![0.0; n * DIMENSIONS],
                token_counts: vec![0; n],
                truncated: vec![false; n],
            }),
            finished: Mutex::new(Some(tx)),
        });
        (job, rx)
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Stores text `index`'s vector; the last one sends the job its output.
    pub(crate) fn record(&self, index: usize, vector: &[f32], tokens: &Tokens) {
        {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            out.vectors[index * DIMENSIONS..(index + 1) * DIMENSIONS].copy_from_slice(vector);
            out.token_counts[index] = tokens.ids.len() as u32;
            out.truncated[index] = tokens.truncated;
        }
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.texts.len() {
            let out = std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()));
            self.finish(Ok(out));
        }
    }

    /// Fails the job and drops its remaining texts.
    pub(crate) fn fail(&self, message: String) {
        self.cancel.store(true, Ordering::Relaxed);
        self.finish(Err(message));
    }

    fn finish(&self, outcome: Result<Output, String>) {
        let tx = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// A tokenized text waiting for a run.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) job: Arc<JobTexts>,
    pub(crate) index: usize,
    pub(crate) tokens: Tokens,
    /// When it joined the pool: the oldest anchors the next run.
    seq: u64,
}

impl Item {
    fn len(&self) -> usize {
        self.tokens.ids.len()
    }
}

/// What an engine thread does next.
#[derive(Debug)]
pub(crate) enum Work {
    /// Tokenize these texts of the job, then [`Pool::put`] them.
    Tokenize(Arc<JobTexts>, Range<usize>),
    /// Run these texts through the model in one call.
    Run(Vec<Item>),
}

/// The shared pool (behind the engine's mutex).
#[derive(Debug, Default)]
pub(crate) struct Pool {
    /// Jobs with texts still to tokenize, and the index of the next; they take turns.
    untokenized: VecDeque<(Arc<JobTexts>, usize)>,
    ready: Vec<Item>,
    ready_tokens: usize,
    next_seq: u64,
}

impl Pool {
    /// Texts in the engine not yet embedded (to tokenize, or waiting for a run).
    pub(crate) fn backlog(&self) -> usize {
        let untokenized: usize = self
            .untokenized
            .iter()
            .map(|(job, next)| job.texts.len() - next)
            .sum();
        untokenized + self.ready.len()
    }

    pub(crate) fn add(&mut self, job: Arc<JobTexts>) {
        if !job.texts.is_empty() {
            self.untokenized.push_back((job, 0));
        }
    }

    /// The next piece of work under a token budget per run, if there is any.
    pub(crate) fn next(&mut self, budget: usize) -> Option<Work> {
        self.untokenized.retain(|(job, _)| !job.cancelled());
        if self.ready.iter().any(|i| i.job.cancelled()) {
            self.ready.retain(|i| !i.job.cancelled());
            self.ready_tokens = self.ready.iter().map(Item::len).sum();
        }
        let full = self.ready_tokens >= FILL * budget;
        if !self.ready.is_empty() && (full || self.untokenized.is_empty()) {
            return Some(Work::Run(self.cut(budget)));
        }
        let (job, start) = self.untokenized.pop_front()?;
        let end = (start + CHUNK).min(job.texts.len());
        if end < job.texts.len() {
            self.untokenized.push_back((job.clone(), end));
        }
        Some(Work::Tokenize(job, start..end))
    }

    /// Adds the tokens of `job`'s texts from index `start` on.
    pub(crate) fn put(&mut self, job: &Arc<JobTexts>, start: usize, tokens: Vec<Tokens>) {
        for (k, tokens) in tokens.into_iter().enumerate() {
            self.ready_tokens += tokens.ids.len();
            self.ready.push(Item {
                job: job.clone(),
                index: start + k,
                tokens,
                seq: self.next_seq,
            });
            self.next_seq += 1;
        }
    }

    /// Cuts one run: the oldest text, and its neighbours by length while rows × longest row
    /// stays within `budget`, each step taking the side that adds the least padding.
    fn cut(&mut self, budget: usize) -> Vec<Item> {
        let budget = budget.max(MAX_TOKENS);
        self.ready.sort_unstable_by_key(|i| (i.len(), i.seq));
        let anchor = (0..self.ready.len())
            .min_by_key(|&k| self.ready[k].seq)
            .unwrap_or(0);
        let (mut lo, mut hi) = (anchor, anchor + 1);
        let len = |k: usize| self.ready[k].len();
        while hi - lo < MAX_ROWS {
            let (rows, width) = (hi - lo + 1, len(hi - 1));
            // Going down pads the shorter text to the width; going up widens every row.
            let down = (lo > 0 && rows * width <= budget).then(|| width - len(lo - 1));
            let up = (hi < self.ready.len() && rows * len(hi) <= budget)
                .then(|| (rows - 1) * (len(hi) - width));
            match (down, up) {
                (Some(d), Some(u)) if u < d => hi += 1,
                (Some(_), _) => lo -= 1,
                (None, Some(_)) => hi += 1,
                (None, None) => break,
            }
        }
        let run: Vec<Item> = self.ready.drain(lo..hi).collect();
        self.ready_tokens -= run.iter().map(Item::len).sum::<usize>();
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: usize) -> Tokens {
        Tokens {
            ids: vec![1; n],
            type_ids: vec![0; n],
            truncated: false,
        }
    }

    fn pool_of(lens: &[usize]) -> (Pool, Arc<JobTexts>) {
        let (job, _rx) = JobTexts::new(vec!["x".into(); lens.len()]);
        let mut pool = Pool::default();
        pool.put(&job, 0, lens.iter().map(|&n| tokens(n)).collect());
        (pool, job)
    }

    #[test]
    fn runs_keep_within_the_budget_and_group_similar_lengths() {
        let lens = [10, 200, 12, 11, 190, 9, 13, 250, 10, 12];
        let (mut pool, _job) = pool_of(&lens);
        let mut seen = Vec::new();
        while let Some(Work::Run(run)) = pool.next(512) {
            let width = run.iter().map(Item::len).max().unwrap();
            assert!(run.len() * width <= 512 || run.len() == 1, "{run:?}");
            let narrow = run.iter().map(Item::len).min().unwrap();
            // Long texts never share a run with short ones.
            assert!(
                width < 2 * narrow,
                "{:?}",
                run.iter().map(Item::len).collect::<Vec<_>>()
            );
            seen.extend(run.iter().map(|i| i.index));
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>());
    }

    #[test]
    fn the_oldest_text_is_in_the_next_run() {
        let (mut pool, _job) = pool_of(&[100, 10, 10, 10]);
        let Some(Work::Run(run)) = pool.next(8192) else {
            panic!("a run")
        };
        assert!(run.iter().any(|i| i.index == 0));
    }

    #[test]
    fn jobs_take_turns_and_cancelled_jobs_leave() {
        let mut pool = Pool::default();
        let (a, _ra) = JobTexts::new(vec!["a".into(); 3 * CHUNK]);
        let (b, _rb) = JobTexts::new(vec!["b".into(); CHUNK]);
        pool.add(a.clone());
        pool.add(b.clone());
        let order: Vec<usize> = (0..3)
            .map(|_| match pool.next(8192) {
                Some(Work::Tokenize(job, range)) => {
                    assert_eq!(range.len(), CHUNK);
                    usize::from(Arc::ptr_eq(&job, &b))
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(order, [0, 1, 0]);
        a.cancel.store(true, Ordering::Relaxed);
        assert!(pool.next(8192).is_none());
    }

    #[test]
    fn the_last_vector_finishes_the_job_in_order() {
        let (job, mut rx) = JobTexts::new(vec!["a".into(), "b".into()]);
        job.record(1, &[1.0; DIMENSIONS], &tokens(3));
        assert!(rx.try_recv().is_err());
        job.record(0, &[0.5; DIMENSIONS], &tokens(5));
        let out = rx.try_recv().unwrap().unwrap();
        assert_eq!(out.token_counts, [5, 3]);
        assert_eq!(out.vectors[0], 0.5);
        assert_eq!(out.vectors[DIMENSIONS], 1.0);
    }
}
