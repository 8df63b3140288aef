//! Per-request limits, in the API's error shapes: the URI's length (`414`), the headers' total
//! size (`431`), and the whole request's time (`408`), which is the configured allowance on
//! top of the `?wait` the request may ask for, so long-polls are not cut short. The body's
//! time is tower-http's `RequestBodyTimeoutLayer` (see [`is_body_timeout`]); connections and
//! request heads are bounded in `server.rs`.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;

use crate::error::{ApiError, respond};
use crate::state::AppState;

/// The outermost step of [`super::gate`]: refuses oversized URIs and headers, and bounds the
/// time of the rest (`inner`).
pub(crate) async fn enforce<F: Future<Output = Response>>(
    state: &AppState,
    req: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    let config = &state.config;
    let path = req.uri().path().to_owned();
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let refusal = if uri_len > config.max_uri_bytes {
        Some(ApiError::UriTooLong(config.max_uri_bytes))
    } else if header_bytes(&req) > config.max_header_bytes {
        Some(ApiError::HeadersTooLarge(config.max_header_bytes))
    } else {
        None
    };
    if let Some(e) = refusal {
        return respond(&path, e);
    }
    let allowance = config.request_timeout_secs + config.max_wait_secs;
    match tokio::time::timeout(Duration::from_secs(allowance), inner(req)).await {
        Ok(res) => res,
        Err(_) => respond(&path, ApiError::RequestTimeout(allowance)),
    }
}

/// Header names and values as sent, plus `": "` and CRLF per header.
fn header_bytes(req: &Request) -> usize {
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// Whether an error reading a body is tower-http's body timeout.
pub(crate) fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        next = e.source();
    }
    false
}
