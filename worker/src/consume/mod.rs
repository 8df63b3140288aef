//! The one consume loop every kind of job goes through: read only as many jobs as can start
//! now, begin their attempts (each gets its [`Fence`]), run them the kind's way, settle the
//! outcomes; leases are renewed on a task of their own meanwhile. On shutdown it stops reading,
//! gives started jobs the kind's grace period, and hands everything else back.
//!
//! A kind of job ([`Kind`]) says what must be held to start one (a free inference thread, a
//! recording slot), how many entries one start takes, and how its attempts run; the loop does
//! the rest the same way for all of them.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use inferq_shared::job::JobId;
use inferq_shared::queue::{Delivery, EntryRef, Queue, Retention};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod backoff;
mod begin;
mod lease;
mod read;
mod settle;

pub(crate) use backoff::Backoff;
pub(crate) use lease::{Attempt, Fence, Lease};
pub(crate) use settle::Settle;

use lease::Leases;
use read::ReadState;

use crate::stats::Counters;

/// Longest a blocking read waits, which bounds how late the loop notices shutdown.
pub(crate) const READ_BLOCK: Duration = Duration::from_millis(500);

/// A group member with nothing pending and idle this long is a worker that left; it is removed
/// when a worker starts.
const CONSUMER_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Longest the shutdown spends handing jobs back after the grace period; what it could not
/// hand back is reclaimed by other workers once its lease expires.
pub(crate) const HANDBACK_LIMIT: Duration = Duration::from_secs(3);

/// One queue's deliveries, by queue index.
type Batch = (usize, Vec<Delivery>);

/// What a kind of job brings to the consume loop.
pub(crate) trait Kind: Send + Sync + 'static {
    /// What must be held to start work: taken before reading, so the worker never reads more
    /// than it can start.
    type Permit: Send + 'static;

    /// Waits until one more start is possible.
    fn acquire(&self) -> impl Future<Output = Self::Permit> + Send;

    /// Starts possible right now besides the permit in hand.
    fn idle(&self) -> usize;

    /// Most entries of queue `queue` that one permit starts (a model's batch size).
    fn per_permit(&self, queue: usize) -> usize;

    /// Longest wait for more entries to fill a batch of queue `queue`.
    fn batch_delay(&self, queue: usize) -> Duration;

    /// Shares what was read over this permit and `idle` more: the first part starts now, the
    /// others as soon as their permits are free.
    fn share(&self, deliveries: Vec<Delivery>, idle: usize) -> Vec<Vec<Delivery>>;

    /// Runs started attempts of queue `queue` on tasks in `tasks`, each settling its attempts
    /// through `settle` when done.
    fn run(
        &self,
        queue: usize,
        attempts: Vec<Attempt>,
        permit: Self::Permit,
        settle: &Settle,
        tasks: &mut JoinSet<()>,
    );
}

/// Where a consume loop reads and what it is allowed.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// Non-blocking commands.
    pub(crate) queue: Queue,
    /// Blocking reads, on a connection of their own.
    pub(crate) reader: Queue,
    /// This worker's consumer name in the group.
    pub(crate) consumer: String,
    /// The streams read, by index (models, or a pipeline's queue).
    pub(crate) names: Arc<[String]>,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retention: Retention,
    /// On shutdown, how long started jobs may take to finish before they are handed back.
    pub(crate) grace: Duration,
    pub(crate) counters: Arc<Counters>,
}

/// The consume loop of one kind of job.
#[derive(Debug)]
pub(crate) struct Consumer<K> {
    kind: K,
    setup: Setup,
    leases: Arc<Leases>,
    settle: Settle,
}

impl<K: Kind> Consumer<K> {
    pub(crate) fn new(kind: K, setup: Setup) -> Self {
        let leases = Leases::new(setup.names.len());
        let settle = Settle {
            queue: setup.queue.clone(),
            names: setup.names.clone(),
            leases: leases.clone(),
            retention: setup.retention,
            counters: setup.counters.clone(),
        };
        Self {
            kind,
            setup,
            leases,
            settle,
        }
    }

    /// Prepares the queues ([`Self::prepare`]), then consumes until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        self.prepare(&stop).await;
        self.consume(stop).await;
    }

    /// Creates the consumer groups, retrying while Redis is unreachable (until `stop`), and
    /// removes departed workers from them.
    pub(crate) async fn prepare(&self, stop: &CancellationToken) {
        let (queue, names) = (&self.setup.queue, &self.setup.names);
        let mut backoff = Backoff::new();
        while !stop.is_cancelled() {
            let mut result = Ok(());
            for name in names.iter() {
                result = result.and(queue.ensure_group(name).await);
            }
            match result {
                Ok(()) => {
                    for name in names.iter() {
                        match queue.prune_consumers(name, CONSUMER_EXPIRY).await {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!(model = %name, removed = n, "removed departed workers from the group")
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "pruning departed workers failed")
                            }
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis not ready; retrying");
                    backoff.wait(stop).await;
                }
            }
        }
    }

    /// Consumes jobs until `stop`, then drains: jobs already started get the grace period to
    /// finish; everything else held goes back to the queue. Returns within the grace period
    /// plus a few seconds whatever Redis does.
    pub(crate) async fn consume(self, stop: CancellationToken) {
        if stop.is_cancelled() {
            return;
        }
        let renewal = CancellationToken::new();
        lease::spawn_renewal(
            self.setup.queue.clone(),
            self.leases.clone(),
            self.setup.names.clone(),
            self.setup.consumer.clone(),
            self.setup.lease,
            renewal.clone(),
        );
        // Renewal goes on through the drain, and ends with this function however it ends.
        let _renewal = renewal.drop_guard();

        let mut tasks = JoinSet::new();
        let mut pending: VecDeque<Batch> = VecDeque::new();
        let mut read_state = ReadState::default();
        let mut backoff = Backoff::new();
        loop {
            reap(&mut tasks);
            if stop.is_cancelled() {
                break;
            }
            let permit = tokio::select! {
                p = self.kind.acquire() => p,
                () = stop.cancelled() => break,
            };
            if stop.is_cancelled() {
                break;
            }
            let (queue, deliveries) = match pending.pop_front() {
                Some(b) => b,
                None => match self.next_batch(&mut pending, &mut read_state).await {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading jobs failed; retrying");
                        backoff.wait(&stop).await;
                        continue;
                    }
                },
            };
            let mut parts = self.kind.share(deliveries, self.kind.idle());
            let first = parts.remove(0);
            for rest in parts.into_iter().rev() {
                pending.push_front((queue, rest));
            }
            match self.begin((queue, first), permit, &mut tasks).await {
                Ok(()) => backoff.reset(),
                Err((e, unstarted)) => {
                    tracing::warn!(error = %e, "starting jobs failed; retrying");
                    pending.push_front(unstarted);
                    backoff.wait(&stop).await;
                }
            }
        }
        self.drain(pending, tasks).await;
    }

    /// The shutdown sequence: unstarted jobs go straight back; started ones get the grace
    /// period; whatever is still held then is handed back (bounded in time).
    async fn drain(&self, pending: VecDeque<Batch>, mut tasks: JoinSet<()>) {
        tracing::info!(
            in_flight = tasks.len(),
            "stopping: no new jobs; finishing started ones"
        );
        let unstarted: Vec<Batch> = pending.into_iter().collect();
        let handback = async {
            for (queue, deliveries) in &unstarted {
                let entries: Vec<_> = deliveries
                    .iter()
                    .map(|d| (d.job, d.entry.clone(), 0))
                    .collect();
                self.release(*queue, &entries).await;
            }
        };
        let _ = tokio::time::timeout(HANDBACK_LIMIT, handback).await;
        for (queue, deliveries) in &unstarted {
            for d in deliveries {
                self.leases.let_go(*queue, &d.entry);
            }
        }

        let grace = self.setup.grace;
        let drained = tokio::time::timeout(grace, async {
            while let Some(r) = tasks.join_next().await {
                log_panic(r);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "grace period over; handing unfinished jobs back to the queue"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        let leftovers = self.leases.take_all();
        let handback = async {
            for (queue, entries) in leftovers.iter().enumerate() {
                if !entries.is_empty() {
                    self.release(queue, entries).await;
                }
            }
        };
        if tokio::time::timeout(HANDBACK_LIMIT, handback)
            .await
            .is_err()
        {
            tracing::warn!(
                "could not hand jobs back in time; they will be reclaimed after the lease"
            );
        }
    }

    async fn release(&self, queue: usize, entries: &[(JobId, EntryRef, u64)]) {
        let name = &self.setup.names[queue];
        match self.setup.queue.release(name, entries).await {
            Ok(n) => {
                tracing::info!(model = %name, released = n, "handed jobs back to the queue")
            }
            // Not lost: once the lease expires another worker reclaims them.
            Err(e) => {
                tracing::warn!(error = %e, "could not hand jobs back; they will be reclaimed after the lease")
            }
        }
    }
}

/// Collects finished job tasks, logging any that panicked past their own guard.
fn reap(tasks: &mut JoinSet<()>) {
    while let Some(r) = tasks.try_join_next() {
        log_panic(r);
    }
}

fn log_panic(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        let panic = e.into_panic();
        tracing::error!(panic = %crate::infer::pool::panic_message(panic.as_ref()), "a job task panicked");
    }
}
