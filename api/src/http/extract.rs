//! Request extractors: path extraction whose rejections use the API's error shapes (axum's own
//! rejections are `text/plain`, which no client of a JSON API, nor the OpenAPI document,
//! expects), job ids, `?wait=`, and the trace context a submission carries.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use inferq_shared::job::JobId;
use inferq_shared::telemetry;
use inferq_shared::trace::TraceParent;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::config::Config;
use crate::error::{ApiError, AppResult};

/// [`Path`] rejected with [`ApiError`] (`400 invalid_request`, e.g. a segment that is not
/// UTF-8 once percent-decoded).
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|e| ApiError::InvalidRequest(e.body_text()))
    }
}

/// The trace context a submission's job carries (see [`telemetry::carried`]): the request's
/// own span when spans are exported, else its valid `traceparent` header, if any. Never
/// rejects: an invalid header is ignored, as W3C Trace Context requires.
#[derive(Debug)]
pub(crate) struct JobTrace(pub(crate) Option<TraceParent>);

impl<S: Send + Sync> FromRequestParts<S> for JobTrace {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(telemetry::carried(traceparent(&parts.headers))))
    }
}

/// The request's `traceparent` header, if it has exactly one and it is valid.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => TraceParent::parse(v.to_str().ok()?),
        _ => None,
    }
}

/// The W3C Trace Context request header.
pub(crate) const TRACEPARENT: &str = "traceparent";

#[derive(Deserialize)]
pub(crate) struct WaitQuery {
    /// Seconds to wait for the job to finish before answering.
    wait: Option<f64>,
}

/// `?wait=<seconds>`, capped at the configured maximum; zero when absent.
pub(crate) fn wait_duration(
    config: &Config,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> AppResult<Duration> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    match query.wait {
        None => Ok(Duration::ZERO),
        Some(w) if w.is_finite() && w >= 0.0 => {
            Ok(Duration::from_secs_f64(w.min(config.max_wait_secs as f64)))
        }
        Some(_) => Err(ApiError::InvalidRequest(
            "wait must be a non-negative number of seconds".into(),
        )),
    }
}

pub(crate) fn parse_id(raw: &str) -> AppResult<JobId> {
    raw.parse()
        .map_err(|_| ApiError::InvalidJobId(raw.chars().take(64).collect()))
}

/// The `traceparent` header the submission routes accept (read by [`traceparent`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub(crate) struct TraceparentHeader {
    /// W3C Trace Context, `00-<32 hex digits trace id>-<16 hex digits parent id>-<2 hex digits
    /// flags>`: the job's work joins this trace (its worker log lines carry the trace id; with
    /// an OTLP endpoint configured its spans are exported as children of this parent). An
    /// invalid value is ignored.
    #[param(nullable = false)]
    traceparent: Option<String>,
}
