//! The OpenAI API face (`/v1`): embeddings, models, files and batches, so the unmodified
//! `openai` SDK talks to inferq with an inferq API key as its bearer token. A face translates
//! shapes and errors, and nothing else: an embeddings request is a `text_embeddings` job made
//! through the one submission path, a batch is a set of such jobs (its request lines packed up
//! to 64 texts to a job), and errors answer in OpenAI's shape (`crate::error::openai`).

mod batch_input;
mod batch_output;
mod batch_pack;
mod batch_progress;
pub(crate) mod batches;
pub(crate) mod embeddings;
pub(crate) mod files;
pub(crate) mod models;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, OpenAiError, OpenAiResult};
use crate::state::AppState;

/// How long files and batches are kept: OpenAI's default for batch files, 30 days.
const KEEP_SECS: u64 = 30 * 24 * 3600;

/// The `object` of a list.
const LIST: &str = "list";

/// [`Path`] rejected in OpenAI's error shape.
#[derive(Debug)]
pub(crate) struct OpenAiPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for OpenAiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OpenAiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|e| OpenAiError::invalid(e.body_text(), None))
    }
}

/// [`Query`] rejected in OpenAI's error shape.
#[derive(Debug)]
pub(crate) struct OpenAiQuery<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for OpenAiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OpenAiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Self(t))
            .map_err(|e| OpenAiError::invalid(e.body_text(), None))
    }
}

/// The body, or the rejection in OpenAI's shape (axum's own is `text/plain`).
fn read_body(body: Result<Bytes, BytesRejection>, state: &AppState) -> OpenAiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.config.max_body_bytes).into()
        } else if crate::http::limits::is_body_timeout(&rejection) {
            ApiError::BodyTimeout(state.config.body_timeout_secs).into()
        } else {
            OpenAiError::invalid(rejection.body_text(), None)
        }
    })
}

/// A JSON body parsed into `T`, its errors `400 invalid_request_error`.
fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> OpenAiResult<T> {
    crate::json::parse_json(bytes).map_err(OpenAiError::from)
}

/// Now, in Unix seconds (OpenAI's times).
fn now_secs() -> u64 {
    inferq_shared::time::now_ms() / 1000
}

/// A new id: `prefix` and 32 hex digits.
fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Whether `id` is `prefix` and 32 lowercase hex digits (the only ids stored, so anything
/// else is answered as unknown without asking Redis).
fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `?after=&limit=` of the list routes, and the files list's `order` and `purpose`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
    order: Option<String>,
    purpose: Option<String>,
}

impl ListQuery {
    /// `limit`, checked against `1..=max`; `default` when absent.
    fn limit(&self, default: usize, max: usize) -> OpenAiResult<usize> {
        match self.limit {
            None => Ok(default),
            Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
            Some(n) => Err(OpenAiError::invalid(
                format!("limit must be between 1 and {max}, got {n}"),
                Some("limit"),
            )),
        }
    }
}

/// OpenAI's cursor page: `{"object": "list", "data", "first_id", "last_id", "has_more"}`.
macro_rules! page {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ", in OpenAI's list shape.")]
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub(crate) struct $name {
            /// `list`.
            object: &'static str,
            data: Vec<$item>,
            first_id: Option<String>,
            last_id: Option<String>,
            has_more: bool,
        }

        impl $name {
            fn new(data: Vec<$item>, has_more: bool) -> Self {
                Self {
                    object: $crate::openai::LIST,
                    first_id: data.first().map(|t| t.id.clone()),
                    last_id: data.last().map(|t| t.id.clone()),
                    data,
                    has_more,
                }
            }
        }
    };
}
pub(crate) use page;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_a_prefix_and_32_hex_digits() {
        let id = new_id("file-");
        assert!(valid_id(&id, "file-"), "{id}");
        assert!(!valid_id(&id, "batch_"));
        assert!(!valid_id("file-abc", "file-"));
        assert!(!valid_id(&format!("file-{}", "G".repeat(32)), "file-"));
        assert!(!valid_id(&format!("file-{}:x", "a".repeat(32)), "file-"));
    }
}
