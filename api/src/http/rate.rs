//! Per-tenant submission rate: each submission request (`POST /jobs`, `/jobs/batch`,
//! `/groups`, OIP inference) takes a token from its tenant's bucket in Redis, shared by every
//! API process; an empty bucket answers `429 rate_limited` with `Retry-After` saying when the
//! next token will be there. The rate and burst are the caller's key's, else the
//! configuration's. (The tenant's `max_queued` quota is checked by the enqueuing script.)

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use inferq_shared::auth::Scope;

use super::auth::{Access, access};
use crate::caller::Principal;
use crate::error::{ApiError, respond};
use crate::state::AppState;

/// A step of [`super::gate`]: refuses a tenant's submissions beyond `INFERQ_TENANT_RATE`.
pub(crate) async fn limit_rate(state: &AppState, req: Request) -> Result<Request, Response> {
    let submission = req.method() == Method::POST
        && access(req.method(), req.uri().path(), false) == Access::Needs(Scope::Submit);
    let caller = req.extensions().get::<Principal>().cloned();
    let (true, Some(caller)) = (submission, caller) else {
        return Ok(req);
    };
    let Some(limit) = caller.rate_limit(&state.config) else {
        return Ok(req);
    };
    let refusal = match state.queue.take_tokens(&caller.tenant, limit, 1).await {
        Ok(Ok(())) => return Ok(req),
        Ok(Err(wait)) => ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64),
        Err(e) => ApiError::from(e),
    };
    Err(respond(req.uri().path(), refusal))
}
