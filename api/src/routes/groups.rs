//! Groups: one request, several jobs (one input fanned out to several models, or any set of
//! jobs), one status. `POST /groups`, `GET /groups/<id>`, `DELETE /groups/<id>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::job::{JobId, JobParameters, JobRequest, JobStatus, OutputRequest};
use inferq_shared::queue::{Retention, Submitted};
use inferq_shared::record::JobRecord;
use inferq_shared::tensor::InputTensor;
use inferq_shared::trace::TraceParent;
use inferq_shared::webhook::WebhookRequest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::caller::Principal;
use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::extract::{
    ApiPath, JobTrace, TraceparentHeader, WaitQuery, parse_id, wait_duration,
};
use crate::json::parse_json;
use crate::state::{AppState, wait_for_job};
use crate::submit::{Asks, Checked, CheckedJob, Desk};

/// A group's record outlives its creation by this much beyond the longest result retention of
/// its members.
const GROUP_MARGIN: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Deserialize)]
struct GroupRequest<'a> {
    #[serde(borrow)]
    jobs: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    inputs: Option<&'a RawValue>,
}

/// A member: a job request whose `inputs` may be left to the group's.
#[derive(Debug, Deserialize)]
struct Member<'a> {
    model: String,
    #[serde(borrow, default)]
    inputs: Option<Vec<InputTensor<'a>>>,
    #[serde(default)]
    outputs: Option<Vec<OutputRequest>>,
    #[serde(default)]
    parameters: Option<JobParameters>,
    #[serde(default)]
    webhook: Option<WebhookRequest>,
}

/// Documents the body of `POST /groups`.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub(crate) struct GroupRequestDoc {
    /// Job requests as `POST /jobs` takes them; a member without `inputs` uses the group's.
    #[schema(min_items = 1, value_type = Vec<Object>)]
    jobs: Vec<serde_json::Value>,
    /// Inputs for the members that give none (one input, several models).
    #[schema(value_type = Option<Vec<Object>>)]
    inputs: Option<Vec<serde_json::Value>>,
}

/// `202` answer to `POST /groups`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupAccepted {
    id: JobId,
    /// Member job ids, in request order.
    jobs: Vec<JobId>,
    /// `/groups/<id>`.
    status_url: String,
}

/// A group and its members.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupRecord {
    id: JobId,
    /// `queued` (no member started; some may be scheduled), `running` (some started, not all final), then, once every
    /// member is final: `succeeded` (all succeeded), `failed` (any failed), else `cancelled`.
    status: JobStatus,
    /// Members per status (every status, zeros included).
    counts: BTreeMap<String, usize>,
    /// The members' records, results included, in request order.
    jobs: Vec<JobRecord>,
}

/// Submits several jobs as one group, all or nothing: if one member is invalid, the answer is
/// `422` naming it (`jobs[<index>]: …`) and no job is created.
#[utoipa::path(
    post, path = "/groups", operation_id = "submit_group", tag = "jobs",
    params(TraceparentHeader),
    request_body(content = GroupRequestDoc, content_type = "application/json"),
    responses(
        (status = 202, description = "Every member queued", body = GroupAccepted,
         headers(("Location" = String, description = "`/groups/<id>`")),
         links(
            ("GroupStatus" = (operation_id = "group_status", parameters(("id" = "$response.body#/id")))),
            ("CancelGroup" = (operation_id = "cancel_group", parameters(("id" = "$response.body#/id")))),
         )),
        (status = 400, description = "`malformed_json`, `invalid_request` (no jobs, too many, \
            a member that is not a JSON object)", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 422, description = "A member does not fit its model: its error code, the \
            message naming `jobs[<index>]`", body = ErrorResponse),
        (status = 429, description = "`overloaded`: a member's model queue is full",
         body = ErrorResponse, headers(("Retry-After" = u32))),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`; or `not_replicated`: \
            fewer than INFERQ_REDIS_WAIT_REPLICAS replicas confirmed the submission in time (it \
            may exist: retry with the same Idempotency-Key)", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn submit_group(
    State(state): State<Arc<AppState>>,
    JobTrace(trace): JobTrace,
    caller: Principal,
    body: Bytes,
) -> AppResult<Response> {
    let req: GroupRequest<'_> = parse_json(&body)?;
    let max = state.config.max_batch_jobs;
    if req.jobs.is_empty() || req.jobs.len() > max {
        return Err(ApiError::InvalidRequest(format!(
            "jobs must hold 1 to {max} job requests, got {}",
            req.jobs.len()
        )));
    }
    let desk = state.desk(&caller);
    let mut prepared = Vec::with_capacity(req.jobs.len());
    for (i, item) in req.jobs.iter().enumerate() {
        if !item.get().trim_start().starts_with('{') {
            return Err(ApiError::InvalidRequest(format!(
                "jobs[{i}] is not a JSON object (a job request)"
            )));
        }
        let member = check(&desk, item, req.inputs, trace)
            .await
            .map_err(|e| in_member(i, e))?;
        prepared.push(member);
    }
    // A group is written in one atomic step, so its members live in its partition.
    let group = state.queue.new_id();
    for job in &mut prepared {
        job.id = state.queue.id_beside(group);
    }
    let longest = prepared
        .iter()
        .map(|p| {
            p.options
                .result_ttl_secs
                .unwrap_or(state.config.result_ttl_secs)
        })
        .max()
        .unwrap_or(state.config.result_ttl_secs);
    let keep = Duration::from_secs(longest) + GROUP_MARGIN;
    let outcomes = desk.submit_group(group, &prepared, keep).await?;
    for (i, (outcome, job)) in outcomes.into_iter().zip(&prepared).enumerate() {
        match outcome {
            Submitted::Queued | Submitted::Scheduled | Submitted::NotSubmitted => {}
            other => return Err(in_member(i, desk.refused(&job.model, other))),
        }
    }
    for job in &prepared {
        crate::metrics::submitted(&job.model);
    }
    let url = format!("/groups/{group}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, url.clone())],
        Json(GroupAccepted {
            id: group,
            jobs: prepared.iter().map(|p| p.id).collect(),
            status_url: url,
        }),
    )
        .into_response())
}

/// A member's error, its message naming the member; client errors answer 422.
fn in_member(i: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::Overloaded(_)
        | ApiError::QuotaExceeded { .. }
        | ApiError::Unavailable(_)
        | ApiError::Internal(_) => e,
        other => {
            let code = other.status_and_code().1;
            ApiError::InvalidMember {
                code,
                message: format!("jobs[{i}]: {other}"),
            }
        }
    }
}

/// One member checked, its inputs the group's where it gives none. Members always run: the
/// result cache does not answer them.
async fn check(
    desk: &Desk<'_>,
    item: &RawValue,
    group_inputs: Option<&RawValue>,
    trace: Option<TraceParent>,
) -> AppResult<CheckedJob> {
    let member: Member<'_> = parse_json(item.get().as_bytes())?;
    let inputs = match (member.inputs, group_inputs) {
        (Some(inputs), _) => inputs,
        (None, Some(shared)) => parse_json(shared.get().as_bytes())?,
        (None, None) => {
            return Err(ApiError::InvalidRequest(
                "no inputs: give the member's own or the group's".into(),
            ));
        }
    };
    let req = JobRequest {
        model: member.model,
        inputs,
        outputs: member.outputs,
        parameters: member.parameters,
        webhook: member.webhook,
    };
    let draft = desk.decode(&req).await?;
    let asks = Asks {
        trace,
        ..Asks::default()
    };
    match desk.check(draft, asks).await? {
        Checked::Job(job) => Ok(*job),
        Checked::Cached(_) => Err(ApiError::Internal(
            "a group member was answered from the cache".into(),
        )),
    }
}

/// The group and its members' records; with `?wait=`, once every member is final or the wait is
/// over.
#[utoipa::path(
    get, path = "/groups/{id}", operation_id = "group_status", tag = "jobs",
    params(
        ("id" = JobId, Path, description = "The group id, as `POST /groups` returned it"),
        ("wait" = Option<f64>, Query, nullable = false, minimum = 0,
         description = "Seconds to wait for every member to be final (capped by INFERQ_MAX_WAIT_SECS)"),
    ),
    responses(
        (status = 200, description = "The group", body = GroupRecord),
        (status = 400, description = "`invalid_job_id`, `invalid_request` (bad `?wait`)",
         body = ErrorResponse),
        (status = 404, description = "`group_not_found`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn group_status(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    ApiPath(raw): ApiPath<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> AppResult<Json<GroupRecord>> {
    let id = parse_id(&raw)?;
    let wait = wait_duration(&state.config, query)?;
    let members = members(&state, &caller, id).await?;
    let until = tokio::time::Instant::now() + wait;
    let mut records = Vec::with_capacity(members.len());
    for m in members {
        // Each member is waited for in turn, all within the one deadline.
        let guard = state.wait_for(m);
        match wait_for_job(&state, &caller, &guard, m, until, true).await {
            Ok(job) => records.push(JobRecord::try_from(job)?),
            // A member whose record expired is left out.
            Err(ApiError::JobNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(view(id, records)))
}

/// Cancels the members still queued or running; answers the group as it then stands.
#[utoipa::path(
    delete, path = "/groups/{id}", operation_id = "cancel_group", tag = "jobs",
    params(("id" = JobId, Path, description = "The group id")),
    responses(
        (status = 200, description = "The group after cancelling its pending members",
         body = GroupRecord),
        (status = 400, description = "`invalid_job_id`", body = ErrorResponse),
        (status = 404, description = "`group_not_found`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn cancel_group(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    ApiPath(raw): ApiPath<String>,
) -> AppResult<Json<GroupRecord>> {
    let id = parse_id(&raw)?;
    let members = members(&state, &caller, id).await?;
    let retention = Retention {
        result_ttl: Duration::from_secs(state.config.result_ttl_secs),
    };
    let mut records = Vec::with_capacity(members.len());
    for m in members {
        // Finished (or expired) members are left as they are.
        state.queue.cancel(m, retention).await?;
        if let Some(job) = state.queue.record(m).await? {
            records.push(JobRecord::try_from(job)?);
        }
    }
    Ok(Json(view(id, records)))
}

/// The members of a group the caller may see; another tenant's group answers as an unknown
/// one.
async fn members(state: &AppState, caller: &Principal, id: JobId) -> AppResult<Vec<JobId>> {
    let owner = state.queue.group_tenant(id).await?;
    if !owner.is_some_and(|t| caller.may_see(&t)) {
        return Err(ApiError::GroupNotFound(id.to_string()));
    }
    state
        .queue
        .group_members(id)
        .await?
        .ok_or_else(|| ApiError::GroupNotFound(id.to_string()))
}

fn view(id: JobId, jobs: Vec<JobRecord>) -> GroupRecord {
    let all = [
        JobStatus::Scheduled,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];
    let mut counts: BTreeMap<String, usize> = all.iter().map(|s| (s.to_string(), 0)).collect();
    for j in &jobs {
        *counts.entry(j.status.to_string()).or_default() += 1;
    }
    let n = |s: JobStatus| counts.get(s.as_str()).copied().unwrap_or(0);
    let status = if jobs.iter().all(|j| j.status.is_terminal()) {
        if n(JobStatus::Failed) > 0 {
            JobStatus::Failed
        } else if n(JobStatus::Succeeded) == jobs.len() {
            JobStatus::Succeeded
        } else {
            JobStatus::Cancelled
        }
    } else if n(JobStatus::Queued) + n(JobStatus::Scheduled) == jobs.len() {
        JobStatus::Queued
    } else {
        JobStatus::Running
    };
    GroupRecord {
        id,
        status,
        counts,
        jobs,
    }
}
