//! Reading JSON request bodies into the API's errors: a syntax error anywhere is reported as
//! `400 malformed_json` before a shape error (`400 invalid_request`), which serde alone may
//! report first.

use serde::Deserialize;

use crate::error::ApiError;

pub(crate) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // A shape error can surface before a syntax error further on; syntax wins.
        if e.classify() != serde_json::error::Category::Data {
            return ApiError::MalformedJson(e.to_string());
        }
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(syntax) => ApiError::MalformedJson(syntax.to_string()),
            Ok(_) => ApiError::InvalidRequest(e.to_string()),
        }
    })
}
