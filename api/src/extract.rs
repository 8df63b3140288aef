//! Path extraction whose rejections use the API's error shapes: axum's own rejections are
//! `text/plain`, which no client of a JSON API (nor the OpenAPI document) expects.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
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
