//! Redis key names for the tests that look into Redis: built by the shared crate's `Keys` (the
//! one place that knows them, see [`App::keys`](super::App::keys)), never written by hand.

use inferq_shared::job::JobId;

/// A job id as the API answers it, typed for [`Keys`](inferq_shared::queue::Keys).
pub(crate) fn job_id(id: &str) -> JobId {
    id.parse()
        .unwrap_or_else(|e| panic!("{id:?} is not a job id: {e}"))
}

/// A pattern of `KEYS` / `SCAN` matching every key that starts with `prefix`.
pub(crate) fn all_under(prefix: &str) -> String {
    format!("{prefix}*")
}
