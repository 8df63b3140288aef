//! Reading jobs for a caller: the tenant-scoped reads every job route shares, and the
//! long-poll that waits for a job to end.

use std::time::Duration;

use inferq_shared::job::JobId;
use inferq_shared::queue::StoredJob;
use inferq_shared::record::JobRecord;

use super::AppState;
use crate::caller::Principal;
use crate::error::{ApiError, AppResult};
use crate::notify::WaitGuard;

/// Reads a job the caller may see. Another tenant's job answers exactly as an unknown id
/// does, so ids cannot be probed for existence.
pub(crate) async fn read_stored(
    state: &AppState,
    caller: &Principal,
    id: JobId,
) -> AppResult<StoredJob> {
    state
        .queue
        .record(id)
        .await?
        .filter(|job| caller.may_see(&job.tenant))
        .ok_or_else(|| ApiError::JobNotFound(id.to_string()))
}

pub(crate) async fn read_record(
    state: &AppState,
    caller: &Principal,
    id: JobId,
) -> AppResult<JobRecord> {
    Ok(read_stored(state, caller, id).await?.try_into()?)
}

/// Reads the record once it is terminal or `until` passes, whichever is first. `read_first`
/// reads before the first wait (a job that may already be done); a job just submitted is not.
/// When the server starts shutting down, it answers at once with the record as it stands, so
/// the drain is not held up by long-polls.
pub(crate) async fn wait_for_record(
    state: &AppState,
    caller: &Principal,
    guard: &WaitGuard<'_>,
    id: JobId,
    until: tokio::time::Instant,
    read_first: bool,
) -> AppResult<JobRecord> {
    Ok(wait_for_job(state, caller, guard, id, until, read_first)
        .await?
        .try_into()?)
}

/// [`wait_for_record`], returning the job as stored.
pub(crate) async fn wait_for_job(
    state: &AppState,
    caller: &Principal,
    guard: &WaitGuard<'_>,
    id: JobId,
    until: tokio::time::Instant,
    mut read_first: bool,
) -> AppResult<StoredJob> {
    // A job this process submitted and has not heard end needs no read before the wait (the
    // guard was registered before this look, so its end cannot slip between the two).
    if read_first
        && state
            .unfinished_tenant(id)
            .is_some_and(|tenant| caller.may_see(&tenant))
    {
        read_first = false;
    }
    loop {
        let notified = guard.signal.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = tokio::time::Instant::now();
        let stopping = state.is_shutting_down();
        if read_first || now >= until || guard.signal.fired() || stopping {
            let record = read_stored(state, caller, id).await?;
            if record.status.is_terminal() || now >= until || stopping {
                return Ok(record);
            }
        }
        read_first = true;
        // Events arrive over pub/sub; the periodic re-read only covers events lost while the
        // subscription was reconnecting.
        let slice = until
            .saturating_duration_since(now)
            .min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::timeout(slice, notified) => {}
            () = state.shutting_down() => {}
        }
    }
}
