//! `POST /v1/embeddings`: OpenAI's embeddings request becomes a `text_embeddings` job (made
//! by the one submission path), and the answer is written in OpenAI's shape when the job
//! finishes. The request's checks and the answer's rendering are shared with the batches,
//! whose every line is such a request.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use inferq_shared::JobStatus;
use inferq_shared::embedding::{
    DIMENSIONS, Embedding, EmbeddingResult, EmbeddingSettings, EncodingFormat,
};
use inferq_shared::pipeline::EMBEDDING_MODEL;
use inferq_shared::queue::{StoredJob, Submitted};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{LIST, parse, read_body};
use crate::caller::Principal;
use crate::error::{OpenAiError, OpenAiErrorBody, OpenAiResult};
use crate::state::{AppState, wait_for_job};
use crate::submit::{CheckedJob, Desk};

/// Most inputs in one request, as OpenAI allows.
pub(crate) const MAX_INPUTS: usize = 2048;

/// OpenAI's embeddings request.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmbeddingsRequest {
    /// `all-MiniLM-L6-v2` (`GET /v1/models`).
    model: String,
    /// A text, or a list of up to 2048 texts (none empty). Token-id arrays are refused:
    /// inferq tokenizes the texts itself.
    #[schema(value_type = Object)]
    input: Value,
    /// `float` (the default) or `base64` (little-endian float32 bytes; the SDK's default).
    #[serde(default)]
    encoding_format: Option<String>,
    /// 384, or left out: the model's vectors have 384 dimensions.
    #[serde(default)]
    dimensions: Option<i64>,
    /// Ignored.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored, as OpenAI's monitoring id")]
    user: Option<String>,
}

/// An embeddings request checked: its texts and the spelling of the answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wanted {
    pub(crate) texts: Vec<String>,
    pub(crate) format: EncodingFormat,
}

impl EmbeddingsRequest {
    /// The checks OpenAI makes, with its errors: an unknown model is `404 model_not_found`,
    /// anything else that does not fit `400 invalid_request_error` naming the parameter.
    pub(crate) fn check(self) -> OpenAiResult<Wanted> {
        if self.model != EMBEDDING_MODEL {
            return Err(OpenAiError::model_not_found(&self.model));
        }
        let format = match self.encoding_format.as_deref() {
            None | Some("float") => EncodingFormat::Float,
            Some("base64") => EncodingFormat::Base64,
            Some(other) => {
                return Err(OpenAiError::invalid(
                    format!(
                        "encoding_format must be 'float' or 'base64', got '{}'",
                        other.chars().take(32).collect::<String>()
                    ),
                    Some("encoding_format"),
                ));
            }
        };
        if let Some(d) = self.dimensions
            && d != DIMENSIONS as i64
        {
            return Err(OpenAiError::invalid(
                format!(
                    "{EMBEDDING_MODEL} has {DIMENSIONS} dimensions; dimensions={d} is not supported"
                ),
                Some("dimensions"),
            ));
        }
        Ok(Wanted {
            texts: texts(self.input)?,
            format,
        })
    }
}

/// The texts of `input`: a string, or a list of strings.
fn texts(input: Value) -> OpenAiResult<Vec<String>> {
    let bad = |m: &str| OpenAiError::invalid(m, Some("input"));
    let tokens = || {
        bad("token-id inputs are not supported: send the texts, which inferq tokenizes itself")
            .with_code("unsupported_input")
    };
    let texts = match input {
        Value::String(s) => vec![s],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad("input must not be an empty list"));
            }
            if items.len() > MAX_INPUTS {
                return Err(bad(&format!(
                    "input holds {} texts; at most {MAX_INPUTS} per request",
                    items.len()
                )));
            }
            let mut texts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => texts.push(s),
                    Value::Number(_) | Value::Array(_) => return Err(tokens()),
                    _ => return Err(bad("input must be a string or a list of strings")),
                }
            }
            texts
        }
        _ => return Err(bad("input must be a string or a list of strings")),
    };
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(bad(&format!(
            "input[{i}] is empty; every text needs content"
        )));
    }
    Ok(texts)
}

/// OpenAI's embeddings response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingsResponse {
    /// `list`.
    object: &'static str,
    data: Vec<EmbeddingObject>,
    model: String,
    usage: Usage,
}

/// One vector.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingObject {
    /// `embedding`.
    object: &'static str,
    index: usize,
    /// 384 numbers, or (with `encoding_format=base64`) their little-endian float32 bytes.
    embedding: Embedding,
}

/// Tokens read (the model's WordPiece tokens, `[CLS]` and `[SEP]` included).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// A job's result in OpenAI's shape, each vector spelt as `format` asks.
pub(crate) fn render(result: EmbeddingResult, format: EncodingFormat) -> EmbeddingsResponse {
    let data = result
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let embedding = match (&e, format) {
                (Embedding::Float(_), EncodingFormat::Float)
                | (Embedding::Base64(_), EncodingFormat::Base64) => e,
                _ => e.to_vec().map_or(e, |v| Embedding::encode(&v, format)),
            };
            EmbeddingObject {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    EmbeddingsResponse {
        object: LIST,
        data,
        model: result.model,
        usage: Usage {
            prompt_tokens: result.total_tokens,
            total_tokens: result.total_tokens,
        },
    }
}

/// The result of a succeeded `text_embeddings` job.
pub(crate) fn job_result(job: &StoredJob) -> OpenAiResult<EmbeddingResult> {
    let bytes = job.result.as_deref().ok_or_else(|| {
        OpenAiError::internal(format!("job {} succeeded without a result", job.id))
    })?;
    serde_json::from_slice(bytes)
        .map_err(|e| OpenAiError::internal(format!("result of job {}: {e}", job.id)))
}

/// The job of a checked request, made by the one submission path.
pub(crate) fn job(desk: &Desk<'_>, wanted: Wanted) -> OpenAiResult<CheckedJob> {
    let settings = EmbeddingSettings {
        encoding_format: wanted.format,
    };
    desk.text_embeddings_job(wanted.texts, None, settings)
        .map_err(|e| OpenAiError::from(e).with_param(Some("input")))
}

/// Embeds the input: queued as a `text_embeddings` job, answered when the job finishes.
#[utoipa::path(
    post, path = "/v1/embeddings", operation_id = "openai_create_embeddings", tag = "openai",
    request_body(content = EmbeddingsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The vectors, in input order", body = EmbeddingsResponse),
        (status = 400, description = "`invalid_request_error`: malformed JSON, an empty or \
            token-id input, `dimensions` other than 384, an unknown `encoding_format`",
         body = OpenAiErrorBody),
        (status = 404, description = "`model_not_found`", body = OpenAiErrorBody),
        (status = 413, description = "The body is over INFERQ_MAX_BODY_BYTES", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: the job failed", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
        (status = 504, description = "Not finished within INFERQ_MAX_WAIT_SECS: the job goes on",
         body = OpenAiErrorBody),
    ),
)]
pub(crate) async fn create_embeddings(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    body: Result<Bytes, BytesRejection>,
) -> OpenAiResult<Json<EmbeddingsResponse>> {
    let body = read_body(body, &state)?;
    let wanted = parse::<EmbeddingsRequest>(&body)?.check()?;
    let format = wanted.format;
    let desk = state.desk(&caller);
    let job = job(&desk, wanted)?;
    let (id, queue) = (job.id, job.model.clone());
    // Registered before the job exists, so its completion cannot slip past.
    let guard = state.wait_for(id);
    match desk.submit(job).await? {
        Submitted::Queued => crate::metrics::submitted(&queue),
        other => return Err(desk.refused(&queue, other).into()),
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(state.config.max_wait_secs);
    let stored = wait_for_job(&state, &caller, &guard, id, until, false).await?;
    match stored.status {
        JobStatus::Succeeded => Ok(Json(render(job_result(&stored)?, format))),
        JobStatus::Failed | JobStatus::Cancelled => {
            let (code, message) = stored
                .error
                .unwrap_or_else(|| ("cancelled".into(), "the job was cancelled".into()));
            Err(OpenAiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("the embedding job {id} failed: {message}"),
                Some(&code),
            ))
        }
        _ => Err(OpenAiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            format!(
                "the embeddings did not finish within {} s; job {id} goes on (GET /status/{id})",
                state.config.max_wait_secs
            ),
            Some("timeout"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> OpenAiResult<Wanted> {
        serde_json::from_value::<EmbeddingsRequest>(v)
            .unwrap()
            .check()
    }

    #[test]
    fn requests_are_checked_as_openai_does() {
        let ok = check(json!({"model": EMBEDDING_MODEL, "input": "hi"})).unwrap();
        assert_eq!(
            (ok.texts, ok.format),
            (vec!["hi".into()], EncodingFormat::Float)
        );
        let ok = check(json!({"model": EMBEDDING_MODEL, "input": ["a", "b"],
            "encoding_format": "base64", "dimensions": 384, "user": "u"}))
        .unwrap();
        assert_eq!((ok.texts.len(), ok.format), (2, EncodingFormat::Base64));
        let err = |v: Value| check(v).unwrap_err();
        let e = err(json!({"model": "text-embedding-3-small", "input": "hi"}));
        assert_eq!(
            (e.status.as_u16(), e.object.code.as_deref()),
            (404, Some("model_not_found"))
        );
        for (v, param) in [
            (json!({"model": EMBEDDING_MODEL, "input": ""}), "input"),
            (json!({"model": EMBEDDING_MODEL, "input": []}), "input"),
            (json!({"model": EMBEDDING_MODEL, "input": [1, 2]}), "input"),
            (
                json!({"model": EMBEDDING_MODEL, "input": [[1, 2]]}),
                "input",
            ),
            (
                json!({"model": EMBEDDING_MODEL, "input": {"a": 1}}),
                "input",
            ),
            (
                json!({"model": EMBEDDING_MODEL, "input": "a", "dimensions": 256}),
                "dimensions",
            ),
            (
                json!({"model": EMBEDDING_MODEL, "input": "a", "encoding_format": "int8"}),
                "encoding_format",
            ),
        ] {
            let e = err(v.clone());
            assert_eq!(e.status.as_u16(), 400, "{v}");
            assert_eq!(e.object.kind, "invalid_request_error");
            assert_eq!(e.object.param.as_deref(), Some(param), "{v}");
        }
        let many: Vec<String> = (0..=MAX_INPUTS).map(|i| i.to_string()).collect();
        assert!(check(json!({"model": EMBEDDING_MODEL, "input": many})).is_err());
    }

    #[test]
    fn results_are_rendered_in_the_asked_spelling() {
        let v = vec![0.5f32; DIMENSIONS];
        let result = EmbeddingResult {
            model: EMBEDDING_MODEL.into(),
            dimensions: DIMENSIONS,
            embeddings: vec![Embedding::Float(v.clone())],
            token_counts: vec![3],
            truncated: vec![],
            total_tokens: 3,
            ids: None,
        };
        let r = serde_json::to_value(render(result.clone(), EncodingFormat::Base64)).unwrap();
        assert_eq!(r["object"], "list");
        assert_eq!(r["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(r["data"][0]["object"], "embedding");
        let b64 = r["data"][0]["embedding"].as_str().unwrap();
        assert_eq!(Embedding::Base64(b64.into()).to_vec().unwrap(), v);
        let r = serde_json::to_value(render(result, EncodingFormat::Float)).unwrap();
        assert_eq!(
            r["data"][0]["embedding"].as_array().unwrap().len(),
            DIMENSIONS
        );
    }
}
