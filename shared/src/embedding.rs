//! The `text_embeddings` pipeline's side of what the API and the workers share: its
//! parameters, the checks a job's texts pass at submission, the payload and upload a job
//! carries through the queue, and the shape of its result.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::job::JobParameters;
use crate::pipeline::{
    EMBEDDING_MODEL, ParameterError, ParameterInfo, PipelineInfo, TEXT_EMBEDDINGS, integer,
    parameter,
};

/// Length of an all-MiniLM-L6-v2 vector.
pub const DIMENSIONS: usize = 384;

/// Longest text the model reads, in tokens (`[CLS]` and `[SEP]` included); a longer text is
/// cut there and its index reported in the result's `truncated`.
pub const MAX_TOKENS: usize = 256;

/// Most texts in one job, unless the API is configured otherwise.
pub const DEFAULT_MAX_TEXTS: usize = 100_000;

/// How the result spells each vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// The vector's little-endian float32 bytes, base64 (standard alphabet, padded).
    Base64,
}

/// `text_embeddings` settings, every default applied: what the worker runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmbeddingSettings {
    pub encoding_format: EncodingFormat,
}

/// Reads `text_embeddings` parameters (a JSON object, or absent) into its settings and the
/// job parameters every job has (`timeout_ms`, `deadline`). Unknown names and values out of
/// range are errors.
pub fn embedding_parameters(
    params: Option<&Map<String, Value>>,
) -> Result<(EmbeddingSettings, JobParameters), ParameterError> {
    let mut s = EmbeddingSettings::default();
    let mut job = JobParameters::default();
    for (name, v) in params.into_iter().flatten() {
        match name.as_str() {
            "encoding_format" => {
                s.encoding_format = match v.as_str() {
                    Some("float") => EncodingFormat::Float,
                    Some("base64") => EncodingFormat::Base64,
                    _ => {
                        return Err(ParameterError(format!(
                            "parameter 'encoding_format' must be \"float\" or \"base64\", got {}",
                            v.to_string().chars().take(64).collect::<String>()
                        )));
                    }
                }
            }
            "timeout_ms" => job.timeout_ms = Some(integer(name, v)?),
            "deadline" => job.deadline = Some(integer(name, v)?),
            other => {
                return Err(ParameterError(format!(
                    "unknown parameter '{}' (known: encoding_format, timeout_ms, deadline)",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok((s, job))
}

/// Texts refused at submission: none, too many, an empty one, one holding a NUL, or ids that
/// do not pair with the texts. The message says which and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TextsError(pub String);

/// Checks a job's texts (and ids, when given) against the rules every way in shares.
pub fn check_texts(
    texts: &[String],
    ids: Option<&[String]>,
    max_texts: usize,
) -> Result<(), TextsError> {
    if texts.is_empty() {
        return Err(TextsError("texts is empty; give at least one text".into()));
    }
    if texts.len() > max_texts {
        return Err(TextsError(format!(
            "{} texts is more than the limit of {max_texts} per job",
            texts.len()
        )));
    }
    for (i, t) in texts.iter().enumerate() {
        if t.is_empty() {
            return Err(TextsError(format!("text {i} is empty")));
        }
        if t.contains('\0') {
            return Err(TextsError(format!("text {i} holds a NUL character")));
        }
    }
    if let Some(ids) = ids
        && ids.len() != texts.len()
    {
        return Err(TextsError(format!(
            "{} ids for {} texts; give one id per text",
            ids.len(),
            texts.len()
        )));
    }
    Ok(())
}

/// What a `text_embeddings` job carries through the queue (the stream entry's payload), as
/// JSON; its texts are in the job's upload ([`TextBatch`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingJob {
    pub pipeline: String,
    pub settings: EmbeddingSettings,
    /// Texts in the upload.
    pub texts: u64,
}

/// A job's texts, stored as its upload (JSON), read whole by the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBatch {
    pub texts: Vec<String>,
    /// The caller's id of each text, echoed in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// One vector: numbers, or base64 little-endian float32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Embedding {
    Float(Vec<f32>),
    Base64(String),
}

impl Embedding {
    /// `vector` spelt as `format` asks.
    pub fn encode(vector: &[f32], format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => Self::Float(vector.to_vec()),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Self::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        }
    }

    /// The numbers, whichever the spelling; `None` for base64 that is not whole float32s.
    pub fn to_vec(&self) -> Option<Vec<f32>> {
        match self {
            Self::Float(v) => Some(v.clone()),
            Self::Base64(s) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                (bytes.len() % 4 == 0).then(|| {
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                })
            }
        }
    }
}

/// The result of a `text_embeddings` job: one vector per text, in the order of the texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingResult {
    /// `all-MiniLM-L6-v2` (int8 weights).
    pub model: String,
    /// 384.
    pub dimensions: usize,
    /// Mean-pooled over the tokens, L2-normalised.
    pub embeddings: Vec<Embedding>,
    /// Tokens of each text as the model read it (`[CLS]` and `[SEP]` included, at most 256).
    pub token_counts: Vec<u32>,
    /// Indices of the texts cut at 256 tokens.
    pub truncated: Vec<u32>,
    /// The sum of `token_counts`.
    pub total_tokens: u64,
    /// The ids given with the texts, in the same order; absent when none were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// `text_embeddings` as `GET /pipelines` lists it.
pub fn pipeline_info() -> PipelineInfo {
    let p = parameter;
    let parameters: Vec<ParameterInfo> = vec![
        p(
            "encoding_format",
            "string",
            "float".into(),
            "\"float\" (JSON numbers) or \"base64\" (little-endian float32 bytes, base64)",
        ),
        p(
            "timeout_ms",
            "integer",
            Value::Null,
            "the job must start within this many ms of submission (as for model jobs)",
        ),
        p(
            "deadline",
            "integer",
            Value::Null,
            "the job must start before this time, ms since the epoch (as for model jobs)",
        ),
    ];
    PipelineInfo {
        name: TEXT_EMBEDDINGS,
        description: "Sentence embeddings of texts by all-MiniLM-L6-v2 (int8 weights, 384 \
            dimensions): each text is tokenized (WordPiece, cut at 256 tokens), the texts of all \
            running jobs share ONNX Runtime calls, and each vector is the mean of its token \
            vectors, L2-normalised. Input: JSON \"texts\" (and \"ids\"), or a multipart file \
            part \"texts\" (one text per line, or JSON Lines {\"id\", \"text\"}). Result: \
            {\"model\", \"dimensions\", \"embeddings\", \"token_counts\", \"truncated\", \
            \"total_tokens\", \"ids\"?}.",
        model: EMBEDDING_MODEL,
        input: "texts",
        formats: vec!["json", "text lines", "jsonl"],
        parameters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        let (s, _) = embedding_parameters(None).unwrap();
        assert_eq!(s.encoding_format, EncodingFormat::Float);
        let v = serde_json::json!({"encoding_format": "base64", "timeout_ms": 5});
        let (s, j) = embedding_parameters(v.as_object()).unwrap();
        assert_eq!(
            (s.encoding_format, j.timeout_ms),
            (EncodingFormat::Base64, Some(5))
        );
        for v in [
            serde_json::json!({"encoding_format": "int8"}),
            serde_json::json!({"dimensions": 384}),
        ] {
            assert!(embedding_parameters(v.as_object()).is_err());
        }
    }

    #[test]
    fn texts_are_checked() {
        let t = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_texts(&t(&["a", "b"]), None, 2).is_ok());
        assert!(check_texts(&t(&[]), None, 2).is_err());
        assert!(check_texts(&t(&["a", "b", "c"]), None, 2).is_err());
        assert!(
            check_texts(&t(&["a", ""]), None, 2)
                .unwrap_err()
                .0
                .contains("text 1")
        );
        assert!(
            check_texts(&t(&["a\0"]), None, 2)
                .unwrap_err()
                .0
                .contains("NUL")
        );
        assert!(check_texts(&t(&["a"]), Some(&t(&["x", "y"])), 2).is_err());
    }

    #[test]
    fn base64_round_trips() {
        let v = [0.5f32, -1.25, 3.0e-7];
        let e = Embedding::encode(&v, EncodingFormat::Base64);
        assert!(matches!(e, Embedding::Base64(_)));
        assert_eq!(e.to_vec().unwrap(), v);
        assert_eq!(
            Embedding::encode(&v, EncodingFormat::Float)
                .to_vec()
                .unwrap(),
            v
        );
    }
}
