//! The jobs this process submitted that have not ended, as far as its event subscription
//! knows: a long-poll for one of them (`GET /status/<id>?wait=` right after `POST /jobs`, the
//! usual client loop) waits for its end without reading the record first.
//!
//! Sound only while the subscription that would have heard the job end was up from before the
//! job was written until now: a job is noted before its submission goes to Redis and only
//! while subscribed, each note carries the subscription's generation, every (re)subscription
//! starts a new generation and every loss forgets all notes. So a note of the current
//! generation means no terminal event for the job has been published yet (or it is still on
//! its way to the listener, which then wakes the waiter that registered before looking here).

use std::collections::HashMap;
use std::sync::Mutex;

use inferq_shared::job::JobId;

/// Most jobs noted at once; beyond it jobs are not noted (their long-polls read first).
const MAX_NOTED: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct Unfinished {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The generation of the live subscription; `None` while unsubscribed.
    live: Option<u64>,
    generations: u64,
    /// Job → (the generation it was noted in, its tenant).
    jobs: HashMap<JobId, (u64, String)>,
}

impl Unfinished {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subscription is up (again): a new generation.
    pub(crate) fn subscribed(&self) {
        let mut s = self.state();
        s.generations += 1;
        s.live = Some(s.generations);
        s.jobs.clear();
    }

    /// The subscription is lost: every note is forgotten.
    pub(crate) fn unsubscribed(&self) {
        let mut s = self.state();
        s.live = None;
        s.jobs.clear();
    }

    /// Notes `id` (of `tenant`) before its submission goes to Redis.
    pub(crate) fn note(&self, id: JobId, tenant: &str) {
        let mut s = self.state();
        if let Some(generation) = s.live
            && s.jobs.len() < MAX_NOTED
        {
            s.jobs.insert(id, (generation, tenant.to_owned()));
        }
    }

    /// `id` ended, or its submission did not enqueue it.
    pub(crate) fn forget(&self, id: JobId) {
        self.state().jobs.remove(&id);
    }

    /// The tenant of `id` when it is known not to have ended.
    pub(crate) fn running_for(&self, id: JobId) -> Option<String> {
        let s = self.state();
        let (generation, tenant) = s.jobs.get(&id)?;
        (s.live == Some(*generation)).then(|| tenant.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_holds_only_within_one_live_subscription() {
        let u = Unfinished::default();
        let (a, b) = (JobId::new(), JobId::new());
        u.note(a, "t");
        assert_eq!(u.running_for(a), None, "not subscribed: nothing is noted");
        u.subscribed();
        u.note(a, "t");
        u.note(b, "t");
        assert_eq!(u.running_for(a).as_deref(), Some("t"));
        u.forget(a);
        assert_eq!(u.running_for(a), None);
        u.unsubscribed();
        assert_eq!(u.running_for(b), None, "events may have been missed");
        u.subscribed();
        assert_eq!(u.running_for(b), None);
    }
}
