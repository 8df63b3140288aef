//! Who follows which job: the in-process fan-out from the API's one Redis pub/sub subscription
//! to the event streams (`GET /jobs/<id>/events`) open on this process. A stream registers
//! its job and gets a [`JobWatch`]; a change published for the job wakes every stream of it,
//! which then reads the record from Redis. Many streams cost one subscription, and a job
//! nobody follows costs a map lookup per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use inferq_shared::job::JobId;
use tokio::sync::watch;

/// The streams following each job.
#[derive(Debug, Default)]
pub(crate) struct JobWatchers {
    jobs: Mutex<HashMap<JobId, Watched>>,
}

#[derive(Debug)]
struct Watched {
    /// Counts notifications; receivers only care that it moved (`changed()`), so a burst of
    /// changes while a stream is busy wakes it once, and it reads the latest state.
    tx: watch::Sender<u64>,
    /// Live [`JobWatch`]es of the job; the entry goes when the last one is dropped.
    count: usize,
}

/// A registration to be woken when a job changes; deregisters on drop. Register before
/// reading the record, so a change between the read and the wait is not missed.
#[derive(Debug)]
pub(crate) struct JobWatch {
    watchers: Arc<JobWatchers>,
    id: JobId,
    rx: watch::Receiver<u64>,
}

impl JobWatch {
    /// Completes once the job changed after the registration or the previous call.
    pub(crate) async fn changed(&mut self) {
        // The sender lives as long as this registration (the entry holds it), so this only
        // completes on a notification.
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        let mut jobs = self.watchers.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = jobs.get_mut(&self.id) {
            w.count -= 1;
            if w.count == 0 {
                jobs.remove(&self.id);
            }
        }
    }
}

impl JobWatchers {
    pub(crate) fn watch(self: &Arc<Self>, id: JobId) -> JobWatch {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let w = jobs.entry(id).or_insert_with(|| Watched {
            tx: watch::channel(0).0,
            count: 0,
        });
        w.count += 1;
        JobWatch {
            watchers: self.clone(),
            id,
            rx: w.tx.subscribe(),
        }
    }

    /// Wakes the streams of `id`, if any.
    pub(crate) fn notify(&self, id: JobId) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = jobs.get(&id) {
            w.tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every stream: after the subscription was lost, events may have been missed.
    pub(crate) fn notify_all(&self) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for w in jobs.values() {
            w.tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many jobs have streams following them on this process.
    #[cfg(test)]
    pub(crate) fn followed_jobs(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_the_streams_of_its_job_only() {
        let watchers = Arc::new(JobWatchers::default());
        let (a, b) = (JobId::new(), JobId::new());
        let mut wa1 = watchers.watch(a);
        let mut wa2 = watchers.watch(a);
        let mut wb = watchers.watch(b);
        watchers.notify(a);
        let soon = std::time::Duration::from_millis(50);
        assert!(tokio::time::timeout(soon, wa1.changed()).await.is_ok());
        assert!(tokio::time::timeout(soon, wa2.changed()).await.is_ok());
        assert!(tokio::time::timeout(soon, wb.changed()).await.is_err());
        // Seen: no second wake-up without a second change.
        assert!(tokio::time::timeout(soon, wa1.changed()).await.is_err());
        drop((wa1, wa2));
        assert_eq!(watchers.followed_jobs(), 1);
        watchers.notify_all();
        assert!(tokio::time::timeout(soon, wb.changed()).await.is_ok());
        drop(wb);
        assert_eq!(watchers.followed_jobs(), 0);
    }
}
