//! `GET /jobs`: the jobs, newest first, filtered by status and model, a page at a time; and
//! the sweeper that keeps the listing index in step with the records that expire.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use inferq_shared::job::JobStatus;
use inferq_shared::model::valid_model_name;
use inferq_shared::queue::{Cursor, ListFilter, Queue};
use inferq_shared::record::JobRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::caller::Principal;
use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::state::AppState;

/// `GET /jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobList {
    /// Records without their results, newest first.
    jobs: Vec<JobRecord>,
    /// Pass as `?cursor=` for the next (older) page; null at the end.
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only jobs in this status.
    #[param(nullable = false)]
    status: Option<JobStatus>,
    /// Only jobs of this model.
    #[param(nullable = false, pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    model: Option<String>,
    /// Most jobs on the page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false, pattern = "^[0-9]+-[0-9]+$")]
    cursor: Option<String>,
}

/// Lists jobs newest first. Pages are stable: jobs submitted after the first page never shift
/// the later ones. A page can hold fewer than `limit` jobs (a filter that matches few of them)
/// while `next_cursor` still leads on; it is null at the end. Jobs leave the listing when their
/// record expires.
#[utoipa::path(
    get, path = "/jobs", operation_id = "list_jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "`invalid_request` (a bad `status`, `model`, `limit` or \
            `cursor`)", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn list_jobs(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> AppResult<Json<JobList>> {
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    if let Some(m) = &q.model
        && !valid_model_name(m)
    {
        return Err(ApiError::InvalidRequest(format!(
            "'{}' is not a model name",
            m.chars().take(64).collect::<String>()
        )));
    }
    let cursor = match &q.cursor {
        None => None,
        Some(c) => Some(Cursor::parse(c).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "'{}' is not a cursor this endpoint returned",
                c.chars().take(64).collect::<String>()
            ))
        })?),
    };
    // The caller's tenant's jobs; an admin sees every tenant's.
    let filter = ListFilter {
        status: q.status,
        model: q.model,
        tenant: (!caller.may_see_all()).then(|| caller.tenant.clone()),
    };
    let (jobs, next) = state.queue.list_jobs(&filter, limit, cursor).await?;
    Ok(Json(JobList {
        jobs: jobs
            .into_iter()
            .map(JobRecord::try_from)
            .collect::<Result<_, _>>()?,
        next_cursor: next.map(|c| c.to_string()),
    }))
}

/// Entries of the listing index looked at per sweep step.
const SWEEP_BATCH: usize = 1000;

/// Every this many passes, a pass walks the whole index (see [`spawn_sweeper`]).
const FULL_PASS_EVERY: u32 = 60;

/// Walks the listing index for ever, dropping the entries of jobs whose record expired.
///
/// The index is in submission order and most jobs share the default retention, so expired
/// entries gather at its old end: a pass starts there and goes on, a step every 250 ms, while
/// its steps find expired entries; a step that finds none ends it, and the next pass starts
/// over after 5 s. The sweeper's work therefore follows what expires, not the size of the
/// index (at 5,000 jobs a second a one-day retention keeps 432 million entries). Every
/// [`FULL_PASS_EVERY`]th pass walks the whole index, for the jobs with a retention shorter
/// than those before them; listings also drop the expired entries they meet. Each partition's
/// index has a sweeper of its own.
pub(crate) fn spawn_sweeper(queue: Queue) {
    for p in 0..queue.partitions() {
        spawn_partition_sweeper(queue.clone(), p);
    }
}

fn spawn_partition_sweeper(queue: Queue, partition: usize) {
    tokio::spawn(async move {
        let (mut from, mut pass) = (None, 0u32);
        loop {
            match queue.sweep_index(partition, from, SWEEP_BATCH).await {
                Ok((next, gone)) => {
                    let full = pass % FULL_PASS_EVERY == FULL_PASS_EVERY - 1;
                    from = if gone == 0 && !full { None } else { next };
                    let pause = if from.is_none() {
                        pass = pass.wrapping_add(1);
                        5000
                    } else {
                        250
                    };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "sweeping the job index failed");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
}
