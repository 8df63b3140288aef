//! Pipeline jobs, the pipeline side of `POST /jobs` (multipart with an `audio` file part, or
//! JSON with base64 audio). The upload is checked at the edge as far as
//! its header goes (a file that is not audio, empty, or in a codec the worker cannot decode is
//! a `422` here), then stored in Redis with the job in one step; the worker reads it from there
//! and the job's end deletes it.

use axum::body::Bytes;
use axum::extract::Multipart;
use base64::Engine;
use inferq_shared::audio::Decoder;
use inferq_shared::egress::UrlError;
use inferq_shared::job::JobParameters;
use inferq_shared::pipeline::{self, PipelineJob, SpeechSettings, speech_parameters};
use inferq_shared::queue::keys::pipeline_queue;
use inferq_shared::time::now_ms;
use inferq_shared::webhook::WebhookRequest;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::io::Cursor;
use utoipa::ToSchema;

use super::{CheckedJob, Desk, JobOptions};
use crate::error::{ApiError, AppResult};
use crate::json::parse_json;

/// Largest `parameters` part of a multipart submission.
const MAX_PARAMETERS_BYTES: usize = 64 * 1024;

/// A pipeline submission, read from either body form.
#[derive(Debug)]
pub(crate) struct PipelineUpload {
    pipeline: String,
    audio: Audio,
    parameters: Option<Map<String, Value>>,
    webhook: Option<WebhookRequest>,
}

/// The recording: its bytes, or a URL the worker fetches it from.
#[derive(Debug)]
enum Audio {
    Bytes(Bytes),
    Url(String),
}

/// The JSON form: `{"pipeline", "audio": {"data": "<base64>"}, "parameters"?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineJsonRequest {
    /// A pipeline from `GET /pipelines`, e.g. `speech_segments`.
    pipeline: String,
    audio: AudioInput,
    /// The pipeline's parameters (see `GET /pipelines`), and `timeout_ms` / `deadline`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<Map<String, Value>>,
    /// POST the job's events to this URL (Standard Webhooks, signed), retried until a 2xx.
    #[serde(default)]
    webhook: Option<WebhookRequest>,
}

/// The input file: `data` or `url`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AudioInput {
    /// The file's bytes, base64 (standard alphabet, padded).
    #[serde(default)]
    data: Option<String>,
    /// Instead of `data`: an http(s) URL the worker fetches the file from (at most
    /// `INFERQ_FETCH_MAX_BYTES`; the same address guard as inputs by URL).
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048)]
    url: Option<String>,
}

/// Whether a JSON body is a pipeline job: it has a top-level `pipeline` member. The byte
/// search keeps the extra parse off model jobs, which never spell that key.
pub(crate) fn is_pipeline_json(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        pipeline: Option<serde::de::IgnoredAny>,
    }
    mentions_pipeline(bytes)
        && serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.pipeline.is_some())
}

/// Whether `"pipeline"` occurs in `bytes`: a scan for the rare `p` (tensor data is digits,
/// commas and brackets), then a comparison where one is found.
fn mentions_pipeline(bytes: &[u8]) -> bool {
    let mut from = 1;
    while let Some(i) = bytes
        .get(from..)
        .and_then(|b| b.iter().position(|&c| c == b'p'))
    {
        let at = from + i;
        if bytes[at - 1] == b'"' && bytes[at..].starts_with(b"pipeline\"") {
            return true;
        }
        from = at + 1;
    }
    false
}

impl PipelineUpload {
    /// The JSON form, its audio decoded from base64.
    pub(crate) fn from_json(bytes: &[u8], max_upload: usize) -> AppResult<Self> {
        let req: PipelineJsonRequest = parse_json(bytes)?;
        let audio = match (req.audio.data, req.audio.url) {
            (Some(data), None) => {
                let audio = base64::engine::general_purpose::STANDARD
                    .decode(data.as_bytes())
                    .map_err(|e| {
                        ApiError::InvalidRequest(format!("audio.data is not base64: {e}"))
                    })?;
                if audio.len() > max_upload {
                    return Err(ApiError::UploadTooLarge(max_upload));
                }
                Audio::Bytes(audio.into())
            }
            (None, Some(url)) => Audio::Url(url),
            _ => {
                return Err(ApiError::InvalidRequest(
                    "audio needs either data or url".into(),
                ));
            }
        };
        Ok(Self {
            pipeline: req.pipeline,
            audio,
            parameters: req.parameters,
            webhook: req.webhook,
        })
    }

    /// The multipart form: text part `pipeline`, file part `audio`, optional text part
    /// `parameters` (a JSON object). Parts are read in any order, each within its limit.
    pub(crate) async fn from_multipart(mut form: Multipart, max_upload: usize) -> AppResult<Self> {
        let bad = |m: String| ApiError::InvalidRequest(m);
        let (mut pipeline, mut audio, mut parameters, mut webhook) = (None, None, None, None);
        while let Some(mut field) = form
            .next_field()
            .await
            .map_err(|e| bad(format!("malformed multipart body: {}", e.body_text())))?
        {
            let name = field.name().unwrap_or("").to_owned();
            let limit = match name.as_str() {
                "audio" => max_upload,
                "pipeline" => 256,
                "parameters" | "webhook" => MAX_PARAMETERS_BYTES,
                other => {
                    return Err(bad(format!(
                        "unknown form part '{}' (expected pipeline, audio, parameters, webhook)",
                        other.chars().take(64).collect::<String>()
                    )));
                }
            };
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::UploadTooLarge(max_upload)
                } else {
                    bad(format!("reading form part '{name}': {}", e.body_text()))
                }
            })? {
                if data.len() + chunk.len() > limit {
                    return Err(if name == "audio" {
                        ApiError::UploadTooLarge(max_upload)
                    } else {
                        bad(format!("form part '{name}' is longer than {limit} bytes"))
                    });
                }
                data.extend_from_slice(&chunk);
            }
            match name.as_str() {
                "audio" => audio = Some(Bytes::from(data)),
                "pipeline" => {
                    pipeline = Some(
                        String::from_utf8(data)
                            .map_err(|_| bad("form part 'pipeline' is not text".into()))?,
                    )
                }
                "webhook" => webhook = Some(parse_json::<WebhookRequest>(&data)?),
                _ => {
                    let v: Value = parse_json(&data)?;
                    let Value::Object(map) = v else {
                        return Err(bad("form part 'parameters' must be a JSON object".into()));
                    };
                    parameters = Some(map);
                }
            }
        }
        Ok(Self {
            pipeline: pipeline.ok_or_else(|| bad("missing form part 'pipeline'".into()))?,
            audio: Audio::Bytes(audio.ok_or_else(|| bad("missing file part 'audio'".into()))?),
            parameters,
            webhook,
        })
    }
}

impl Desk<'_> {
    /// A pipeline submission checked: the pipeline and its parameters, the webhook, and the
    /// recording as far as its header goes (or its URL). The job goes to the pipeline's queue
    /// with its upload.
    pub(crate) async fn check_pipeline(&self, upload: PipelineUpload) -> AppResult<CheckedJob> {
        let name = upload.pipeline.trim();
        if name != pipeline::SPEECH_SEGMENTS {
            return Err(ApiError::UnknownPipeline(name.chars().take(64).collect()));
        }
        let (settings, job_params) = speech_parameters(upload.parameters.as_ref())
            .map_err(|e| ApiError::InvalidParameter(e.0))?;
        let webhook = self.webhook(upload.webhook.as_ref())?;
        // A recording by URL is probed by the worker once fetched; its upload starts empty.
        let (audio, audio_url) = match upload.audio {
            Audio::Bytes(audio) => {
                check_audio(audio.clone(), settings).await?;
                (audio, None)
            }
            Audio::Url(url) => {
                let url = self.config.fetch_allow.check_url(&url).map_err(|e| {
                    ApiError::from(match e {
                        UrlError::Invalid(m) => UrlError::Invalid(format!("audio.url: {m}")),
                        UrlError::NotAllowed(m) => UrlError::NotAllowed(format!("audio.url: {m}")),
                    })
                })?;
                (Bytes::new(), Some(url.to_string()))
            }
        };
        let payload = serde_json::to_vec(&PipelineJob {
            pipeline: name.to_owned(),
            settings,
            upload_bytes: audio.len() as u64,
            audio_url,
        })
        .map_err(|e| ApiError::Internal(format!("encoding a pipeline job: {e}")))?;
        let options = JobOptions {
            deadline_ms: JobParameters::deadline_ms(&job_params, now_ms()),
            ..JobOptions::default()
        };
        Ok(self.job(pipeline_queue(name), payload, options, webhook, Some(audio)))
    }
}

/// What the header shows, checked before anything is stored: an empty file, one that is not
/// audio, or a codec the worker cannot decode is refused here. What only decoding reveals (a
/// truncated or corrupt body) fails the job later with `invalid_audio`.
async fn check_audio(audio: Bytes, settings: SpeechSettings) -> AppResult<()> {
    let checked = tokio::task::spawn_blocking(move || {
        Decoder::open(Box::new(Cursor::new(audio)), settings.sampling_rate).map(|_| ())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("probing an upload: {e}")))?;
    checked.map_err(|e| ApiError::InvalidAudio(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_jobs_are_told_from_model_jobs() {
        assert!(is_pipeline_json(
            br#"{"pipeline": "speech_segments", "audio": {"data": ""}}"#
        ));
        assert!(is_pipeline_json(
            br#"{"audio": {"data": ""}, "pipeline":"x"}"#
        ));
        assert!(!is_pipeline_json(
            br#"{"model": "m", "inputs": [{"name": "pipeline"}]}"#
        ));
        assert!(!is_pipeline_json(br#"{"model": "m", "inputs": []}"#));
        assert!(!is_pipeline_json(b"pipeline"));
        assert!(mentions_pipeline(br#"x"pipeline""#));
        assert!(!mentions_pipeline(br#"pipeline""#));
    }
}

/// For the OpenAPI document: the multipart form.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub(crate) struct PipelineForm {
    /// A pipeline from `GET /pipelines`, e.g. `speech_segments`.
    pipeline: String,
    /// The recording (WAV, FLAC, MP3, Ogg Vorbis).
    #[schema(value_type = String, format = Binary)]
    audio: Vec<u8>,
    /// A JSON object: the pipeline's parameters.
    parameters: Option<String>,
    /// A JSON object: the job's webhook, `{"url", "events"?}`.
    webhook: Option<String>,
}
