//! The operator's routes: `GET /workers`, `GET /queues`, and the dead letters (`GET /dead`,
//! `POST /dead/<id>/retry`, `DELETE /dead/<id>`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use inferq_shared::queue::{DeadLetter, Failure, Queue, Retried, WorkerInfo};
use inferq_shared::record::ErrorBody;
use inferq_shared::time::rfc3339_ms;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::extract::ApiPath;
use crate::state::AppState;

/// A live worker.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Worker {
    /// Its consumer name in the queue.
    id: String,
    host: String,
    pid: u32,
    /// inferq version.
    version: String,
    models: Vec<String>,
    /// Inference threads.
    threads: usize,
    /// Inference threads running a batch at the last heartbeat.
    busy: usize,
    jobs_succeeded: u64,
    jobs_failed: u64,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    last_heartbeat: String,
}

impl From<WorkerInfo> for Worker {
    fn from(w: WorkerInfo) -> Self {
        Self {
            id: w.id,
            host: w.host,
            pid: w.pid,
            version: w.version,
            models: w.models,
            threads: w.threads,
            busy: w.busy,
            jobs_succeeded: w.jobs_succeeded,
            jobs_failed: w.jobs_failed,
            started_at: rfc3339_ms(w.started_at),
            last_heartbeat: rfc3339_ms(w.last_heartbeat),
        }
    }
}

/// `GET /workers`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkerList {
    workers: Vec<Worker>,
}

/// Every live worker (a heartbeat within the last 10 s; workers send one every 2 s).
#[utoipa::path(
    get, path = "/workers", operation_id = "list_workers", tag = "operations",
    responses(
        (status = 200, description = "The live workers", body = WorkerList),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn workers(State(state): State<Arc<AppState>>) -> AppResult<Json<WorkerList>> {
    let workers = state.queue.live_workers().await?;
    Ok(Json(WorkerList {
        workers: workers.into_iter().map(Worker::from).collect(),
    }))
}

/// One model's queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueFigures {
    /// Jobs waiting, not started.
    depth: u64,
    /// Jobs started and not finished.
    running: u64,
    /// Age of the oldest waiting job, seconds; 0 when none waits.
    oldest_age_seconds: f64,
    /// Jobs finished (any outcome) in the last 60 whole seconds.
    completed_last_minute: u64,
    /// Jobs finished in each of the last 60 whole seconds, oldest first.
    completed_per_second: Vec<u64>,
    /// Live workers serving the model.
    workers: usize,
}

/// A recent failure.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecentFailure {
    id: String,
    model: String,
    /// The job's error code.
    code: String,
    message: String,
    #[schema(format = DateTime)]
    failed_at: String,
}

impl From<Failure> for RecentFailure {
    fn from(f: Failure) -> Self {
        Self {
            id: f.id,
            model: f.model,
            code: f.code,
            message: f.message,
            failed_at: rfc3339_ms(f.failed_at),
        }
    }
}

/// `GET /queues`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueOverview {
    /// Per registered model, by name, and per pipeline whose model is registered, as
    /// `pipeline:<name>` (its jobs are counted there, not under the model it runs).
    queues: BTreeMap<String, QueueFigures>,
    /// Entries in the dead-letter stream.
    dead_letters: u64,
    /// The latest failed jobs, newest first (at most 20).
    recent_failures: Vec<RecentFailure>,
}

/// Per queue (each model's, and each pipeline's as `pipeline:<name>`): jobs waiting and
/// running, the age of the oldest waiting job, throughput and workers; plus the dead-letter count and the latest failures. Every API replica reports the
/// same figures: they are read from Redis.
#[utoipa::path(
    get, path = "/queues", operation_id = "list_queues", tag = "operations",
    responses(
        (status = 200, description = "The queues", body = QueueOverview),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn queues(State(state): State<Arc<AppState>>) -> AppResult<Json<QueueOverview>> {
    let overview = state.overview().await?;
    let failures = state.queue.recent_failures(20).await?;
    Ok(Json(QueueOverview {
        queues: overview
            .models
            .iter()
            .map(|m| {
                let figures = QueueFigures {
                    depth: m.depth,
                    running: m.running,
                    oldest_age_seconds: m.oldest_age_ms.unwrap_or(0) as f64 / 1000.0,
                    completed_last_minute: m.completed_last_minute(),
                    completed_per_second: m.completed_per_second.clone(),
                    workers: m.workers,
                };
                (m.model.clone(), figures)
            })
            .collect(),
        dead_letters: overview.dead_letters,
        recent_failures: failures.into_iter().map(RecentFailure::from).collect(),
    }))
}

/// A dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterRecord {
    /// The job id; null for an entry whose job id could not be read.
    id: Option<String>,
    /// The dead-letter entry's own id; also accepted wherever a dead letter's id is.
    dead_id: String,
    model: Option<String>,
    /// `max_attempts_exceeded` or `malformed_entry`.
    error: ErrorBody,
    /// Attempts the job used.
    attempts: Option<u32>,
    #[schema(format = DateTime)]
    failed_at: Option<String>,
    /// Whether `POST /dead/{id}/retry` can run it again.
    retryable: bool,
    /// The tenant that submitted the job; null when the entry named no readable job.
    tenant: Option<String>,
}

impl From<DeadLetter> for DeadLetterRecord {
    fn from(d: DeadLetter) -> Self {
        let message = d.message.unwrap_or_else(|| match d.reason.as_str() {
            "malformed_entry" => "the job's queue entry could not be read".into(),
            _ => "the job used up its attempts".into(),
        });
        Self {
            id: d.job.map(|j| j.to_string()),
            dead_id: d.dead_id,
            model: d.model,
            error: ErrorBody {
                code: d.reason,
                message,
            },
            attempts: d.attempts,
            failed_at: d.failed_at.map(rfc3339_ms),
            retryable: d.retryable,
            tenant: d.tenant,
        }
    }
}

/// `GET /dead`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterPage {
    dead_letters: Vec<DeadLetterRecord>,
    /// Pass as `?cursor=` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadQuery {
    /// Most entries on the page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false, pattern = "^[0-9]+-[0-9]+$")]
    cursor: Option<String>,
    /// Only this tenant's dead letters. A filtered page looks at 10,000 dead letters at most:
    /// it may hold fewer than `limit` while `next_cursor` says there is more to look at.
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_.-]+$"
    )]
    tenant: Option<String>,
}

/// The dead letters, newest first, a page at a time: jobs that used up their attempts, and
/// queue entries that could not be read.
#[utoipa::path(
    get, path = "/dead", operation_id = "list_dead_letters", tag = "operations",
    params(DeadQuery),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterPage,
         links(
            ("RetryDeadLetter" = (operation_id = "retry_dead_letter",
                                  parameters(("id" = "$response.body#/dead_letters/0/dead_id")))),
            ("DeleteDeadLetter" = (operation_id = "delete_dead_letter",
                                   parameters(("id" = "$response.body#/dead_letters/0/dead_id")))),
         )),
        (status = 400, description = "`invalid_request` (a bad `limit`, `cursor` or `tenant`)",
         body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn dead_letters(
    State(state): State<Arc<AppState>>,
    query: Result<Query<DeadQuery>, QueryRejection>,
) -> AppResult<Json<DeadLetterPage>> {
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    if let Some(c) = &q.cursor
        && !Queue::is_dead_cursor(c)
    {
        return Err(ApiError::InvalidRequest(format!(
            "'{c}' is not a cursor this endpoint returned"
        )));
    }
    if let Some(t) = &q.tenant
        && !inferq_shared::auth::valid_tenant(t)
    {
        return Err(ApiError::InvalidRequest(
            inferq_shared::auth::AuthError::InvalidTenant.to_string(),
        ));
    }
    let (page, next) = state
        .queue
        .dead_letters(limit, q.cursor.as_deref(), q.tenant.as_deref())
        .await?;
    Ok(Json(DeadLetterPage {
        dead_letters: page.into_iter().map(DeadLetterRecord::from).collect(),
        next_cursor: next,
    }))
}

/// `POST /dead/{id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Requeued {
    id: String,
    /// Always `queued`.
    status: String,
    status_url: String,
}

/// Runs a dead letter's job again: a new series of attempts under the same job id (its record
/// goes back to `queued`, attempts to 0); the dead letter is removed.
#[utoipa::path(
    post, path = "/dead/{id}/retry", operation_id = "retry_dead_letter", tag = "operations",
    params(("id" = String, Path, description = "The job id, or the dead letter's `dead_id`")),
    responses(
        (status = 202, description = "Queued again", body = Requeued,
         headers(("Location" = String, description = "The job's status URL"))),
        (status = 404, description = "`dead_letter_not_found`", body = ErrorResponse),
        (status = 409, description = "`not_retryable`: an unreadable entry, a retired model, \
            or the job is queued or running already", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn retry_dead_letter(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> AppResult<Response> {
    let job = match state.queue.retry_dead(&id).await? {
        Retried::Queued(job) => job,
        Retried::NotFound => return Err(ApiError::DeadLetterNotFound(id)),
        Retried::NotRetryable => {
            return Err(ApiError::NotRetryable(
                "the dead letter holds no job that can run (its entry could not be read)".into(),
            ));
        }
        Retried::ModelUnknown(model) => {
            return Err(ApiError::NotRetryable(format!(
                "the job's model '{model}' was retired"
            )));
        }
        Retried::Conflict(job) => {
            return Err(ApiError::NotRetryable(format!(
                "job {job} is queued or running already"
            )));
        }
    };
    let url = format!("/status/{job}");
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, url.clone())],
        Json(Requeued {
            id: job.to_string(),
            status: "queued".into(),
            status_url: url,
        }),
    )
        .into_response())
}

/// Deletes a dead letter (the job's record, if still kept, is left as it is).
#[utoipa::path(
    delete, path = "/dead/{id}", operation_id = "delete_dead_letter", tag = "operations",
    params(("id" = String, Path, description = "The job id, or the dead letter's `dead_id`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`dead_letter_not_found`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn delete_dead_letter(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> AppResult<StatusCode> {
    if state.queue.delete_dead(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::DeadLetterNotFound(id))
    }
}
