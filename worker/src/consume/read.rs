//! Reading jobs: reclaiming expired leases, then each model's priority lanes in rank order with
//! its own count (only what the idle threads can start), blocking briefly when nothing waits;
//! topping batches up; setting malformed entries aside.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use inferq_shared::queue::{Delivery, Entry, QueueError};

use super::{Batch, Consumer, Kind, READ_BLOCK};

/// Where the read loop stands between calls.
#[derive(Debug, Default)]
pub(super) struct ReadState {
    last_reclaim: Option<Instant>,
    /// The model whose stream is read first next time, so no model starves another.
    next_model: usize,
}

impl<K: Kind> Consumer<K> {
    /// Most entries of `queue` the free permits can start now.
    fn capacity(&self, queue: usize, idle: usize) -> usize {
        self.kind.per_permit(queue).max(1) * idle
    }

    /// Reads the next batch: first any entries whose lease expired (checked every half lease),
    /// then new ones, each model's stream with its own count, so a model that cannot batch is
    /// never read deeper than the idle threads. Blocks briefly when nothing waits.
    pub(super) async fn next_batch(
        &self,
        pending: &mut VecDeque<Batch>,
        state: &mut ReadState,
    ) -> Result<Option<Batch>, QueueError> {
        let idle = 1 + self.kind.idle();
        let lease = self.setup.lease;
        let n = self.setup.names.len();
        if state.last_reclaim.is_none_or(|t| t.elapsed() >= lease / 2) {
            state.last_reclaim = Some(Instant::now());
            for i in 0..n {
                let got = self
                    .setup
                    .reader
                    .reclaim(
                        &self.setup.consumer,
                        &self.setup.names[i],
                        lease,
                        self.capacity(i, idle),
                    )
                    .await?;
                let got = self.accept(i, got).await;
                if !got.is_empty() {
                    tracing::info!(model = %self.setup.names[i], jobs = got.len(), "reclaimed jobs whose lease expired");
                    return Ok(Some((i, got)));
                }
            }
        }
        // Each model's lanes in rank order (priority, aged by waiting time).
        for k in 0..n {
            let i = (state.next_model + k) % n;
            let got = self
                .setup
                .reader
                .read(
                    &self.setup.consumer,
                    &self.setup.names[i],
                    self.capacity(i, idle),
                    None,
                )
                .await?;
            let got = self.accept(i, got).await;
            if !got.is_empty() {
                state.next_model = i + 1;
                return Ok(Some(self.fill(i, got, idle, self.capacity(i, idle)).await));
            }
        }
        // Nothing waiting: block on every lane of every model at once, one entry each (with
        // one model, as many as can start; entries arriving in several lanes at the same
        // instant may make a batch that is larger than that, highest priority first).
        let names: Vec<&str> = self.setup.names.iter().map(String::as_str).collect();
        let count = if n == 1 { self.capacity(0, idle) } else { 1 };
        let got = self
            .setup
            .reader
            .read_any(&self.setup.consumer, &names, count, Some(READ_BLOCK))
            .await?;
        let mut by_model: Vec<Vec<Entry>> = vec![Vec::new(); n];
        for (i, e) in got {
            by_model[i].push(e);
        }
        let mut batches = Vec::new();
        for (i, entries) in by_model.into_iter().enumerate() {
            let got = self.accept(i, entries).await;
            if !got.is_empty() {
                batches.push((i, got));
            }
        }
        let mut batches = batches.into_iter();
        let Some((i, first)) = batches.next() else {
            return Ok(None);
        };
        // At most one entry of each other model: it starts as soon as a thread is free.
        pending.extend(batches);
        Ok(Some(self.fill(i, first, idle, count).await))
    }

    /// Tops a batch up to what the idle threads can take, waiting up to the model's batching
    /// delay for more. `asked` is what the read that produced `batch` asked for: when it came
    /// back short the stream held nothing more, so without a delay there is nothing to wait
    /// for and no second read is made. A Redis error ends the filling but keeps everything
    /// already read.
    async fn fill(
        &self,
        model: usize,
        mut batch: Vec<Delivery>,
        idle: usize,
        asked: usize,
    ) -> Batch {
        let max = self.capacity(model, idle);
        let delay = self.kind.batch_delay(model);
        if delay.is_zero() && batch.len() < asked {
            return (model, batch);
        }
        let deadline = Instant::now() + delay;
        let mut first = true;
        while batch.len() < max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !first {
                break;
            }
            // Capped like every blocking read, so the connection's response timeout (which
            // allows for READ_BLOCK) never fires on a long batching delay.
            let block = (!left.is_zero()).then(|| left.clamp(Duration::from_millis(1), READ_BLOCK));
            first = false;
            let more = match self
                .setup
                .reader
                .read(
                    &self.setup.consumer,
                    &self.setup.names[model],
                    max - batch.len(),
                    block,
                )
                .await
            {
                Ok(more) => self.accept(model, more).await,
                Err(e) => {
                    tracing::warn!(error = %e, jobs = batch.len(), "reading more jobs for a batch failed; running what was read");
                    break;
                }
            };
            if more.is_empty() {
                break;
            }
            batch.extend(more);
        }
        (model, batch)
    }

    /// Holds the leases of readable entries and sets the malformed ones aside.
    async fn accept(&self, model: usize, entries: Vec<Entry>) -> Vec<Delivery> {
        let mut good = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for e in entries {
            match e {
                Entry::Job(d) => good.push(d),
                Entry::Malformed { entry, job } => bad.push((entry, job)),
            }
        }
        self.leases.hold(model, &good);
        if !bad.is_empty() {
            tracing::warn!(model = %self.setup.names[model], entries = ?bad, "setting aside malformed stream entries");
            if let Err(e) = self
                .setup
                .queue
                .set_aside(&self.setup.names[model], &bad, self.setup.retention)
                .await
            {
                // They stay pending; after the lease they are read (and set aside) again.
                tracing::warn!(error = %e, "setting malformed entries aside failed");
            }
        }
        good
    }
}
