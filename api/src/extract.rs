//! Request extractors: path extraction whose rejections use the API's error shapes (axum's own
//! rejections are `text/plain`, which no client of a JSON API, nor the OpenAPI document,
//! expects), and the trace context a submission carries.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use inferq_shared::telemetry;
use inferq_shared::trace::TraceParent;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
