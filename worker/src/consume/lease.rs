//! The leases a worker holds: which stream entries it has read and, once started, under which
//! fencing token. Keyed by (entry, token): if a stalled attempt's lease lapses and this same
//! worker reclaims the entry, the stale attempt and the new one are two leases, and the stale
//! one finishing cannot drop the new one's renewal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferq_shared::job::JobId;
use inferq_shared::queue::{Delivery, EntryRef, Queue};
use tokio_util::sync::CancellationToken;

/// Token of an entry that was read but not started.
const UNSTARTED: u64 = 0;

/// The fencing token of a started attempt (its attempt number): Redis refuses a completion,
/// progress or hand-back that carries an older one. Only the start step makes one, so an
/// attempt can be settled only after it was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Fence(u64);

impl Fence {
    /// The start step's answer for one delivery: `None` for one that is not to run (cancelled,
    /// finished, or out of attempts and dead-lettered).
    pub(super) fn started(token: u64) -> Option<Self> {
        (token != UNSTARTED).then_some(Self(token))
    }

    /// The attempt number, which is also the token the queue's scripts compare.
    pub(crate) fn attempt(self) -> u64 {
        self.0
    }
}

/// A started attempt's hold on its stream entry. Settling an attempt (recording its outcome or
/// handing it back) takes its lease.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) job: JobId,
    pub(crate) entry: EntryRef,
    pub(crate) fence: Fence,
}

/// A started attempt: the job as read, and its lease.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) delivery: Delivery,
    pub(crate) fence: Fence,
}

impl Attempt {
    pub(crate) fn lease(&self) -> Lease {
        Lease {
            job: self.delivery.job,
            entry: self.delivery.entry.clone(),
            fence: self.fence,
        }
    }
}

/// Per queue: (entry, token) → job.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<Vec<HashMap<(EntryRef, u64), JobId>>>,
}

impl Leases {
    pub(crate) fn new(queues: usize) -> Arc<Self> {
        Arc::new(Self {
            held: Mutex::new(vec![HashMap::new(); queues]),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<HashMap<(EntryRef, u64), JobId>>) -> R) -> R {
        f(&mut self.held.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Entries just read or reclaimed, not started yet.
    pub(crate) fn hold(&self, queue: usize, deliveries: &[Delivery]) {
        self.with(|held| {
            for d in deliveries {
                held[queue].insert((d.entry.clone(), UNSTARTED), d.job);
            }
        });
    }

    /// The attempt on `entry` started under `fence`, or (`None`) is not to run.
    pub(crate) fn started(&self, queue: usize, entry: &EntryRef, job: JobId, fence: Option<Fence>) {
        self.with(|held| {
            held[queue].remove(&(entry.clone(), UNSTARTED));
            if let Some(f) = fence {
                held[queue].insert((entry.clone(), f.0), job);
            }
        });
    }

    /// An entry read but never started is let go (handed back unstarted).
    pub(crate) fn let_go(&self, queue: usize, entry: &EntryRef) {
        self.with(|held| {
            held[queue].remove(&(entry.clone(), UNSTARTED));
        });
    }

    /// The attempt is over (recorded, handed back or given up).
    pub(crate) fn finished(&self, queue: usize, lease: &Lease) {
        self.with(|held| {
            held[queue].remove(&(lease.entry.clone(), lease.fence.0));
        });
    }

    /// Distinct entries held per queue, for renewal.
    pub(crate) fn entries(&self) -> Vec<Vec<EntryRef>> {
        self.with(|held| {
            held.iter()
                .map(|m| {
                    let mut e: Vec<EntryRef> = m.keys().map(|(e, _)| e.clone()).collect();
                    e.sort();
                    e.dedup();
                    e
                })
                .collect()
        })
    }

    /// Everything held, per queue, as `(job, entry, token)` for the queue's hand-back, emptying
    /// the table.
    pub(crate) fn take_all(&self) -> Vec<Vec<(JobId, EntryRef, u64)>> {
        self.with(|held| {
            held.iter_mut()
                .map(|m| m.drain().map(|((e, t), j)| (j, e, t)).collect())
                .collect()
        })
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.with(|held| held.iter().all(HashMap::is_empty))
    }
}

/// Renews every held lease every `lease / 3` until `stop`, on its own task so nothing else
/// (model announcements, a slow Redis call elsewhere) can delay it.
pub(crate) fn spawn_renewal(
    queue: Queue,
    leases: Arc<Leases>,
    names: Arc<[String]>,
    consumer: String,
    lease: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut renew = tokio::time::interval(lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = renew.tick() => {}
                () = stop.cancelled() => return,
            }
            for (queue_index, entries) in leases.entries().iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                let name = &names[queue_index];
                // Bounded, so one hung call cannot hold back the next renewal for long.
                let call = queue.heartbeat(name, &consumer, entries);
                match tokio::time::timeout(lease / 3, call).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, model = %name, "renewing leases failed")
                    }
                    Err(_) => tracing::warn!(model = %name, "renewing leases timed out"),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(entry: &str, job: JobId) -> Delivery {
        Delivery {
            entry: EntryRef::new(entry),
            job,
            payload: Vec::new(),
            trace: None,
            fetch_allow: Default::default(),
        }
    }

    fn lease(entry: &str, job: JobId, token: u64) -> Lease {
        Lease {
            job,
            entry: EntryRef::new(entry),
            fence: Fence::started(token).unwrap(),
        }
    }

    #[test]
    fn a_stale_attempt_finishing_keeps_the_new_attempts_lease() {
        let leases = Leases::new(1);
        let job = JobId::new();
        leases.hold(0, &[delivery("1-0", job)]);
        leases.started(0, &EntryRef::new("1-0"), job, Fence::started(1));
        // The lease lapsed; this worker reclaims its own entry and starts attempt 2.
        leases.hold(0, &[delivery("1-0", job)]);
        leases.started(0, &EntryRef::new("1-0"), job, Fence::started(2));
        // Attempt 1 finishes late (its completion is fenced off in Redis).
        leases.finished(0, &lease("1-0", job, 1));
        assert_eq!(leases.entries(), [vec![EntryRef::new("1-0")]]);
        leases.finished(0, &lease("1-0", job, 2));
        assert!(leases.is_empty());
    }

    #[test]
    fn a_delivery_not_to_run_is_dropped_at_start() {
        let leases = Leases::new(2);
        let job = JobId::new();
        leases.hold(1, &[delivery("5-0", job)]);
        assert_eq!(leases.entries()[1], [EntryRef::new("5-0")]);
        leases.started(1, &EntryRef::new("5-0"), job, Fence::started(0));
        assert!(leases.is_empty());
    }
}
