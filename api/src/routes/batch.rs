//! `POST /jobs/batch`: many jobs in one request, each validated and answered on its own, all
//! valid ones enqueued in a few Redis round trips.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use inferq_shared::job::{JobId, JobRequest, JobStatus};
use inferq_shared::queue::Submitted;
use inferq_shared::record::ErrorBody;
use inferq_shared::trace::TraceParent;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::caller::Principal;
use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::extract::{JobTrace, TraceparentHeader};
use crate::json::parse_json;
use crate::state::AppState;
use crate::submit::options::valid_idempotency_key;
use crate::submit::{Asks, Checked, CheckedJob, Desk};

/// Jobs per Redis call: bounds how long one script holds Redis.
const JOBS_PER_CALL: usize = 256;

/// `POST /jobs/batch` body.
#[derive(Debug, Deserialize)]
struct BatchRequest<'a> {
    #[serde(borrow)]
    jobs: Vec<&'a RawValue>,
}

/// What a batch item holds besides the job request.
#[derive(Debug, Deserialize)]
struct ItemMeta {
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// One item's answer: the job, or why it was refused.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchItem {
    Accepted {
        id: JobId,
        /// `queued`; for a replayed idempotency key, the first job's current status.
        status: JobStatus,
        status_url: String,
        /// True when the item's `idempotency_key` answered with the job it first created.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        idempotent_replayed: bool,
    },
    Refused {
        error: ErrorBody,
    },
}

impl BatchItem {
    fn refused(e: &ApiError) -> Self {
        Self::Refused {
            error: ErrorBody {
                code: e.status_and_code().1.to_owned(),
                message: e.to_string(),
            },
        }
    }
}

/// `POST /jobs/batch` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchAnswer {
    /// One per submitted job, in request order.
    jobs: Vec<BatchItem>,
}

/// Documents the body of `POST /jobs/batch`.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub(crate) struct BatchRequestDoc {
    /// Job requests as `POST /jobs` takes them (the `JobRequestDoc` schema), each with an
    /// optional `idempotency_key`. Items are checked one by one: an item that is not a valid
    /// job gets its own error in the answer, and the others still run.
    #[schema(min_items = 1, value_type = Vec<Object>)]
    jobs: Vec<serde_json::Value>,
}

/// Submits many jobs at once. Each item is validated on its own: valid items are enqueued even
/// when others are refused, and the answer lists, in request order, each job's id or its error.
#[utoipa::path(
    post, path = "/jobs/batch", operation_id = "submit_batch", tag = "jobs",
    params(TraceparentHeader),
    request_body(content = BatchRequestDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "One answer per job, in request order", body = BatchAnswer),
        (status = 400, description = "`malformed_json`, `invalid_request` (no jobs, more than \
            INFERQ_MAX_BATCH_JOBS, or an item that is not a JSON object)", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`; or `not_replicated`: \
            fewer than INFERQ_REDIS_WAIT_REPLICAS replicas confirmed the submission in time (it \
            may exist: retry with the same Idempotency-Key)", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn submit_batch(
    State(state): State<Arc<AppState>>,
    JobTrace(trace): JobTrace,
    caller: Principal,
    body: Bytes,
) -> AppResult<Json<BatchAnswer>> {
    let req: BatchRequest<'_> = parse_json(&body)?;
    let max = state.config.max_batch_jobs;
    if req.jobs.is_empty() || req.jobs.len() > max {
        return Err(ApiError::InvalidRequest(format!(
            "jobs must hold 1 to {max} job requests, got {}",
            req.jobs.len()
        )));
    }
    if let Some(i) = req
        .jobs
        .iter()
        .position(|j| !j.get().trim_start().starts_with('{'))
    {
        return Err(ApiError::InvalidRequest(format!(
            "jobs[{i}] is not a JSON object (a job request)"
        )));
    }
    let desk = state.desk(&caller);
    let mut answers: Vec<Option<BatchItem>> = Vec::with_capacity(req.jobs.len());
    // (index in the request, the job)
    let mut valid = Vec::new();
    for item in &req.jobs {
        match check(&desk, item.get().as_bytes(), trace).await {
            Ok(Checked::Job(job)) => {
                valid.push((answers.len(), job));
                answers.push(None);
            }
            Ok(Checked::Cached(id)) => answers.push(Some(BatchItem::Accepted {
                id,
                status: JobStatus::Succeeded,
                status_url: format!("/status/{id}"),
                idempotent_replayed: false,
            })),
            Err(e) => answers.push(Some(BatchItem::refused(&e))),
        }
    }
    for chunk in valid.chunks(JOBS_PER_CALL) {
        let jobs: Vec<&CheckedJob> = chunk.iter().map(|(_, job)| &**job).collect();
        let outcomes = desk.submit_many(&jobs).await?;
        for ((at, p), outcome) in chunk.iter().zip(outcomes) {
            let mut queued_as = JobStatus::Queued;
            let (id, replayed) = match outcome {
                Submitted::Queued => {
                    crate::metrics::submitted(&p.model);
                    (p.id, false)
                }
                Submitted::Scheduled => {
                    crate::metrics::submitted(&p.model);
                    queued_as = JobStatus::Scheduled;
                    (p.id, false)
                }
                Submitted::Replayed(first) => (first, true),
                other => {
                    answers[*at] = Some(BatchItem::refused(&desk.refused(&p.model, other)));
                    continue;
                }
            };
            let status = if replayed {
                state
                    .queue
                    .record(id)
                    .await?
                    .map_or(JobStatus::Queued, |r| r.status)
            } else {
                queued_as
            };
            answers[*at] = Some(BatchItem::Accepted {
                id,
                status,
                status_url: format!("/status/{id}"),
                idempotent_replayed: replayed,
            });
        }
    }
    let jobs = answers
        .into_iter()
        .map(|a| a.ok_or_else(|| ApiError::Internal("a batch item got no answer".into())))
        .collect::<Result<_, _>>()?;
    Ok(Json(BatchAnswer { jobs }))
}

/// One item checked: its idempotency key, then the job request.
async fn check(desk: &Desk<'_>, item: &[u8], trace: Option<TraceParent>) -> AppResult<Checked> {
    let meta: ItemMeta = parse_json(item)?;
    if let Some(k) = &meta.idempotency_key
        && !valid_idempotency_key(k)
    {
        return Err(ApiError::InvalidRequest(
            "idempotency_key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    let req: JobRequest<'_> = parse_json(item)?;
    let draft = desk.decode(&req).await?;
    let asks = Asks {
        idempotency: meta.idempotency_key.map(|k| (k, item)),
        trace,
        cacheable: true,
    };
    desk.check(draft, asks).await
}
