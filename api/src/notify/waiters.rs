//! Who waits for which job to end: the long-polls (`GET /status/<id>?wait=`, `POST /jobs?wait=`,
//! OIP inference, group status) registered on this process, woken when the job turns
//! terminal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use inferq_shared::job::JobId;
use tokio::sync::Notify;

/// The requests waiting for each job.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    jobs: Mutex<HashMap<JobId, Waiter>>,
}

#[derive(Debug)]
struct Waiter {
    signal: Arc<Finished>,
    count: usize,
}

/// A registration to be woken when a job turns terminal; deregisters on drop.
#[derive(Debug)]
pub(crate) struct WaitGuard<'a> {
    waiters: &'a Waiters,
    id: JobId,
    pub(crate) signal: Arc<Finished>,
}

/// Wakes the requests waiting for one job. `fired` stays set once the job turned terminal, so
/// a request that registered but was not yet waiting (still submitting, still reading) does
/// not miss the event: `Notify::notify_waiters` keeps no permit.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    pub(crate) notify: Notify,
    fired: AtomicBool,
}

impl Finished {
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut jobs = self.waiters.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = jobs.get_mut(&self.id) {
            w.count -= 1;
            if w.count == 0 {
                jobs.remove(&self.id);
            }
        }
    }
}

impl Waiters {
    /// Registers interest in `id` turning terminal. Register before reading the record, so an
    /// event between the read and the wait is not missed.
    pub(crate) fn wait_for(&self, id: JobId) -> WaitGuard<'_> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let w = jobs.entry(id).or_insert_with(|| Waiter {
            signal: Arc::default(),
            count: 0,
        });
        w.count += 1;
        WaitGuard {
            waiters: self,
            id,
            signal: w.signal.clone(),
        }
    }

    /// Wakes the requests waiting for `id`, which turned terminal.
    pub(crate) fn notify(&self, id: JobId) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = jobs.get(&id) {
            w.signal.fired.store(true, Ordering::SeqCst);
            w.signal.notify.notify_waiters();
        }
    }
}
