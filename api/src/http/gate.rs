//! The API's own per-request steps, as one middleware: the request's metrics around
//! everything; then its limits (URI and header sizes, the whole request's time); then who
//! calls (`401`/`403`); then the tenant's submission rate (`429 rate_limited`); then the
//! handler, with an estimated `Retry-After` on a `429 overloaded` or `quota_exceeded`. One
//! layer instead of one per step: each axum `from_fn` layer boxes the request's future and
//! clones the services below it, and five of them cost about a fifth of the API's CPU per
//! job (docs/benchmarks.md, "Per-job cost").

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The middleware in front of every route.
pub(crate) async fn gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let timer = crate::metrics::RequestTimer::start(&req);
    let res = super::limits::enforce(&state, req, |req| admitted(&state, req, next)).await;
    timer.finish(&res);
    res
}

/// What follows the limits: authentication, the tenant's rate, the handler.
async fn admitted(state: &AppState, req: Request, next: Next) -> Response {
    let req = match super::auth::authenticate(state, req).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let req = match super::rate::limit_rate(state, req).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    super::backpressure::estimate(state, req, next).await
}
