//! `GET /jobs/<id>/events`: a job's changes as server-sent events.
//!
//! Each event carries the job record (as `GET /status/<id>` answers it) and, as its `id:`, the
//! record's `version`, which every script that changes the record bumps in the same step.
//! The stream sends the current state first, then the record again whenever its version grew:
//! `event: status` when the state or the attempt changed since the previous event, `event:
//! progress` otherwise (a pipeline's progress). It ends after a final state. A change
//! overtaken by a newer one before the stream read it is folded into the newer event, so ids
//! increase but may skip; the final state is always sent.
//!
//! `Last-Event-ID: <n>` resumes: only a record newer than version `n` is sent, so a client
//! that reconnects sees no event twice (and an empty stream when it already has the final
//! one).
//!
//! Streams are woken through the API's one pub/sub subscription ([`crate::notify`]) and
//! read the record then, or every [`RECHECK`] in case a notification was lost.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use inferq_shared::JobStatus;
use inferq_shared::job::JobId;
use inferq_shared::queue::StoredJob;
use inferq_shared::record::JobRecord;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::caller::Principal;
use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::extract::{ApiPath, parse_id};
use crate::notify::JobWatch;
use crate::state::{AppState, read_stored};

/// How often a stream reads the record without being woken, so a notification lost while the
/// subscription reconnected stalls it for this long at most.
const RECHECK: Duration = Duration::from_secs(5);

/// The request header a reconnecting client sends with the last `id:` it received.
pub(crate) const LAST_EVENT_ID: &str = "last-event-id";

/// Event name of a state (or attempt) change.
pub(crate) const STATUS_EVENT: &str = "status";
/// Event name of a progress update of a running job.
pub(crate) const PROGRESS_EVENT: &str = "progress";

// `Last-Event-ID` is described in the text rather than declared a header parameter: with a
// declared header, schemathesis expects any other header to be refused, which no HTTP server does.
/// The job's changes as `text/event-stream`, until it is final.
#[utoipa::path(
    get, path = "/jobs/{id}/events", operation_id = "job_events", tag = "jobs",
    summary = "The job's changes as server-sent events, until it is final",
    description = "A reconnecting client sends `Last-Event-ID: <the id of the last event it \
        received>` and gets only newer events (none when it already had the final one); a \
        value that is not a non-negative integer is `400 invalid_request`.",
    params(("id" = JobId, Path, description = "The job id, as `POST /jobs` returned it")),
    responses(
        (status = 200, description = "`text/event-stream`: the current state first \
            (`event: status`), then one event per change (`event: status` for a state or \
            attempt change, `event: progress` for a pipeline's progress), each with `id:` \
            (the record's `version`) and `data:` (the job record as `GET /status/{id}` \
            answers it); a `:` comment line every INFERQ_EVENTS_KEEPALIVE_SECS (15) seconds \
            while idle; the stream ends after the final state",
         content_type = "text/event-stream", body = JobEvent),
        (status = 400, description = "`invalid_job_id`, `invalid_request` (bad \
            `Last-Event-ID`)", body = ErrorResponse),
        (status = 404, description = "`job_not_found`", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn job_events(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    ApiPath(raw): ApiPath<String>,
    headers: HeaderMap,
) -> AppResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let id = parse_id(&raw)?;
    let resume = last_event_id(&headers)?;
    // Registered before the first read, so no change after it goes unheard.
    let watch = state.watchers().watch(id);
    let first = read_stored(&state, &caller, id).await?;
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(
            state.config.events_keepalive_secs.max(1),
        ))
        .text("keep-alive");
    let follow = Follow {
        state,
        id,
        watch,
        pending: Some(first),
        sent: resume,
        last: None,
        done: false,
    };
    Ok(Sse::new(futures_util::stream::unfold(follow, Follow::next)).keep_alive(keep_alive))
}

/// One event of `GET /jobs/{id}/events`, as the OpenAPI document describes it: OpenAPI 3.1
/// has a `text/event-stream` schema describe each event (its `event`, `id` and `data` fields),
/// and `data` holds the job record as JSON.
pub(crate) struct JobEvent;

impl PartialSchema for JobEvent {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .description(Some("One server-sent event of a job"))
            .property(
                "event",
                text().enum_values(Some([STATUS_EVENT, PROGRESS_EVENT])),
            )
            .required("event")
            .property(
                "id",
                text()
                    .pattern(Some("^[0-9]+$"))
                    .description(Some("The record's `version`")),
            )
            .required("id")
            .property(
                "data",
                text()
                    .content_media_type("application/json")
                    .content_schema(Some(Ref::from_schema_name(JobRecord::name()))),
            )
            .required("data")
            .into()
    }
}

impl ToSchema for JobEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((JobRecord::name().into(), JobRecord::schema()));
        <JobRecord as ToSchema>::schemas(schemas);
    }
}

fn last_event_id(headers: &HeaderMap) -> AppResult<Option<u64>> {
    let Some(v) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    // An empty id is how the protocol resets it: as if none was given.
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        ApiError::InvalidRequest(
            "Last-Event-ID must be the id of an event of this stream (a non-negative integer)"
                .into(),
        )
    })
}

/// One stream's position.
struct Follow {
    state: Arc<AppState>,
    id: JobId,
    watch: JobWatch,
    /// A record read and not yet looked at.
    pending: Option<StoredJob>,
    /// The version of the last event sent (or the client's `Last-Event-ID`).
    sent: Option<u64>,
    /// Status and attempt of the last event sent: what tells `status` from `progress`.
    last: Option<(JobStatus, u32)>,
    /// The final state went out (or the stream cannot go on): end.
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if self.done {
                return None;
            }
            let job = match self.pending.take() {
                Some(job) => job,
                None => self.read_when_changed().await?,
            };
            let terminal = job.status.is_terminal();
            let newer = self.sent.is_none_or(|sent| job.version > sent);
            if !newer {
                if terminal {
                    return None;
                }
                continue;
            }
            let event = self.event(job).await;
            self.done = terminal || event.is_none();
            if let Some(event) = event {
                return Some((Ok(event), self));
            }
        }
    }

    /// Waits for a notification (or the periodic check), then reads the record. `None` ends
    /// the stream: the server is shutting down (the client reconnects with `Last-Event-ID`
    /// elsewhere), or the record is gone (expired).
    async fn read_when_changed(&mut self) -> Option<StoredJob> {
        loop {
            tokio::select! {
                () = self.watch.changed() => {}
                () = tokio::time::sleep(RECHECK) => {}
                () = self.state.shutting_down() => return None,
            }
            match self.state.queue.record(self.id).await {
                Ok(job) => return job,
                // Redis is away for now: try again at the next check, as a long-poll does.
                Err(e) => tracing::debug!(job = %self.id, error = %e, "event stream read failed"),
            }
        }
    }

    /// The event of `job`, or `None` when it cannot be rendered (logged).
    async fn event(&mut self, job: StoredJob) -> Option<Event> {
        let key = (job.status, job.attempts);
        let name = match self.last {
            Some(last) if last == key => PROGRESS_EVENT,
            _ => STATUS_EVENT,
        };
        let version = job.version;
        // Where a queued job stands, as `GET /status` shows it; the stream goes on without.
        let position = match (&job.status, &job.entry) {
            (JobStatus::Queued, Some(entry)) => self
                .state
                .queue
                .position(&job.model, job.priority, entry)
                .await
                .ok(),
            _ => None,
        };
        let record = match JobRecord::try_from(job) {
            Ok(r) => r.with_position(position),
            Err(e) => {
                tracing::error!(job = %self.id, error = %e, "cannot render a job event");
                return None;
            }
        };
        let event = Event::default()
            .event(name)
            .id(version.to_string())
            .json_data(&record);
        match event {
            Ok(event) => {
                self.sent = Some(version);
                self.last = Some(key);
                Some(event)
            }
            Err(e) => {
                tracing::error!(job = %self.id, error = %e, "cannot render a job event");
                None
            }
        }
    }
}
