//! The leases a worker holds: which stream entries it has read and, once started, under which
//! fencing token. Keyed by (entry, token): if a stalled attempt's lease lapses and this same
//! worker reclaims the entry, the stale attempt and the new one are two leases, and the stale
//! one finishing cannot drop the new one's renewal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferq_shared::job::JobId;
use inferq_shared::queue::{Delivery, EntryRef, Queue};

/// Token of an entry that was read but not started.
pub(crate) const UNSTARTED: u64 = 0;

/// Per model: (entry, token) → job.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<Vec<HashMap<(EntryRef, u64), JobId>>>,
}

impl Leases {
    pub(crate) fn new(models: usize) -> Arc<Self> {
        Arc::new(Self {
            held: Mutex::new(vec![HashMap::new(); models]),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<HashMap<(EntryRef, u64), JobId>>) -> R) -> R {
        f(&mut self.held.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Entries just read or reclaimed, not started yet.
    pub(crate) fn hold(&self, model: usize, deliveries: &[Delivery]) {
        self.with(|held| {
            for d in deliveries {
                held[model].insert((d.entry.clone(), UNSTARTED), d.job);
            }
        });
    }

    /// The attempt on `entry` started under `token`, or (token 0) is not to run.
    pub(crate) fn started(&self, model: usize, entry: &EntryRef, job: JobId, token: u64) {
        self.with(|held| {
            held[model].remove(&(entry.clone(), UNSTARTED));
            if token != UNSTARTED {
                held[model].insert((entry.clone(), token), job);
            }
        });
    }

    /// The attempt under `token` is over (recorded, handed back or given up).
    pub(crate) fn finished(&self, model: usize, entry: &EntryRef, token: u64) {
        self.with(|held| {
            held[model].remove(&(entry.clone(), token));
        });
    }

    /// Distinct entries held per model, for renewal.
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

    /// Everything held, per model, as `(job, entry, token)`, emptying the table.
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

/// Renews every held lease every `lease / 3`, on its own task so nothing else (model
/// announcements, a slow Redis call elsewhere) can delay it.
pub(crate) fn spawn_renewal(
    queue: Queue,
    leases: Arc<Leases>,
    names: Arc<[String]>,
    consumer: String,
    lease: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut renew = tokio::time::interval(lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            renew.tick().await;
            for (model, entries) in leases.entries().iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                // Bounded, so one hung call cannot hold back the next renewal for long.
                let call = queue.heartbeat(&names[model], &consumer, entries);
                match tokio::time::timeout(lease / 3, call).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, model = %names[model], "renewing leases failed")
                    }
                    Err(_) => tracing::warn!(model = %names[model], "renewing leases timed out"),
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

    #[test]
    fn a_stale_attempt_finishing_keeps_the_new_attempts_lease() {
        let leases = Leases::new(1);
        let job = JobId::new();
        leases.hold(0, &[delivery("1-0", job)]);
        leases.started(0, &EntryRef::new("1-0"), job, 1);
        // The lease lapsed; this worker reclaims its own entry and starts attempt 2.
        leases.hold(0, &[delivery("1-0", job)]);
        leases.started(0, &EntryRef::new("1-0"), job, 2);
        // Attempt 1 finishes late (its completion is fenced off in Redis).
        leases.finished(0, &EntryRef::new("1-0"), 1);
        assert_eq!(leases.entries(), [vec![EntryRef::new("1-0")]]);
        leases.finished(0, &EntryRef::new("1-0"), 2);
        assert!(leases.is_empty());
    }

    #[test]
    fn a_delivery_not_to_run_is_dropped_at_start() {
        let leases = Leases::new(2);
        let job = JobId::new();
        leases.hold(1, &[delivery("5-0", job)]);
        assert_eq!(leases.entries()[1], [EntryRef::new("5-0")]);
        leases.started(1, &EntryRef::new("5-0"), job, 0);
        assert!(leases.is_empty());
    }
}
