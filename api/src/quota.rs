//! Per-tenant submission rate: each submission request (`POST /jobs`, `/jobs/batch`,
//! `/groups`, OIP inference) takes a token from its tenant's bucket in Redis, shared by every
//! API process; an empty bucket answers `429 rate_limited` with `Retry-After` saying when the
//! next token will be there. The rate and burst are the caller's key's, else the
//! configuration's. (The tenant's `max_queued` quota is checked by the enqueuing script.)

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::auth::Scope;

use crate::auth::{Access, Principal, access};
use crate::error::ApiError;
use crate::state::AppState;

/// A step of [`crate::gate`]: refuses a tenant's submissions beyond `INFERQ_TENANT_RATE`.
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
    if !crate::routes::is_oip_path(req.uri().path()) {
        return Err(refusal.into_response());
    }
    let secs = match &refusal {
        ApiError::RateLimited(s) => Some(*s),
        _ => None,
    };
    let mut res = crate::oip::OipError::from(refusal).into_response();
    if let Some(s) = secs {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    Err(res)
}
