//! Pipeline jobs, the pipeline side of `POST /jobs` (multipart with an `audio` or `texts` file
//! part, or JSON with base64 audio or a list of texts). A recording is checked at the edge as
//! far as its header goes (a file that is not audio, empty, or in a codec the worker cannot
//! decode is a `422` here), texts as [`super::texts`] says; the input is then stored in Redis
//! with the job in one step; the worker reads it from there and the job's end deletes it.

use axum::body::Bytes;
use axum::extract::Multipart;
use base64::Engine;
use inferq_shared::audio::Decoder;
use inferq_shared::egress::UrlError;
use inferq_shared::embedding::embedding_parameters;
use inferq_shared::job::JobParameters;
use inferq_shared::pipeline::{self, PipelineJob, SpeechSettings, speech_parameters};
use inferq_shared::queue::keys::pipeline_queue;
use inferq_shared::time::now_ms;
use inferq_shared::webhook::WebhookRequest;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::io::Cursor;
use utoipa::ToSchema;

use super::texts::{self, Texts};
use super::{CheckedJob, Desk, JobOptions};
use crate::error::{ApiError, AppResult};
use crate::json::parse_json;

/// Largest `parameters` part of a multipart submission.
const MAX_PARAMETERS_BYTES: usize = 64 * 1024;

/// A pipeline submission, read from either body form.
#[derive(Debug)]
pub(crate) struct PipelineUpload {
    pipeline: String,
    input: Input,
    parameters: Option<Map<String, Value>>,
    webhook: Option<WebhookRequest>,
}

/// A pipeline's input, by the member or part it came in.
#[derive(Debug)]
enum Input {
    Audio(Audio),
    Texts(Texts),
}

/// The recording: its bytes, or a URL the worker fetches it from.
#[derive(Debug)]
enum Audio {
    Bytes(Bytes),
    Url(String),
}

/// The JSON form: `{"pipeline", "audio": {"data": "<base64>"}, "parameters"?}`, or
/// `{"pipeline": "text_embeddings", "texts": [...], "ids"?: [...], "parameters"?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineJsonRequest {
    /// A pipeline from `GET /pipelines`, e.g. `speech_segments`.
    pipeline: String,
    /// `speech_segments`: the recording.
    #[serde(default)]
    audio: Option<AudioInput>,
    /// `text_embeddings`: the texts (1 to 100,000; none empty or holding a NUL).
    #[serde(default)]
    texts: Option<Vec<String>>,
    /// `text_embeddings`: an id per text, echoed in the result.
    #[serde(default)]
    ids: Option<Vec<String>>,
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
        let audio = match (req.audio, req.texts) {
            (Some(audio), None) => audio,
            (None, Some(texts)) => {
                if req.ids.is_some() && req.pipeline.trim() != pipeline::TEXT_EMBEDDINGS {
                    return Err(ApiError::InvalidRequest("ids go with texts only".into()));
                }
                return Ok(Self {
                    pipeline: req.pipeline,
                    input: Input::Texts(Texts {
                        texts,
                        ids: req.ids,
                    }),
                    parameters: req.parameters,
                    webhook: req.webhook,
                });
            }
            _ => {
                return Err(ApiError::InvalidRequest(
                    "a pipeline job needs either audio or texts".into(),
                ));
            }
        };
        if req.ids.is_some() {
            return Err(ApiError::InvalidRequest("ids go with texts only".into()));
        }
        let audio = match (audio.data, audio.url) {
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
            input: Input::Audio(audio),
            parameters: req.parameters,
            webhook: req.webhook,
        })
    }

    /// The multipart form: text part `pipeline`, file part `audio` or `texts`, optional text
    /// part `parameters` (a JSON object). Parts are read in any order, each within its limit.
    pub(crate) async fn from_multipart(mut form: Multipart, max_upload: usize) -> AppResult<Self> {
        let bad = |m: String| ApiError::InvalidRequest(m);
        let (mut pipeline, mut audio, mut parameters, mut webhook) = (None, None, None, None);
        let mut lines = None;
        while let Some(mut field) = form
            .next_field()
            .await
            .map_err(|e| bad(format!("malformed multipart body: {}", e.body_text())))?
        {
            let name = field.name().unwrap_or("").to_owned();
            let limit = match name.as_str() {
                "audio" | "texts" => max_upload,
                "pipeline" => 256,
                "parameters" | "webhook" => MAX_PARAMETERS_BYTES,
                other => {
                    return Err(bad(format!(
                        "unknown form part '{}' (expected pipeline, audio or texts, parameters, \
                         webhook)",
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
                    return Err(if name == "audio" || name == "texts" {
                        ApiError::UploadTooLarge(max_upload)
                    } else {
                        bad(format!("form part '{name}' is longer than {limit} bytes"))
                    });
                }
                data.extend_from_slice(&chunk);
            }
            match name.as_str() {
                "audio" => audio = Some(Bytes::from(data)),
                "texts" => lines = Some(texts::from_file(&data)?),
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
        let input = match (audio, lines) {
            (Some(audio), None) => Input::Audio(Audio::Bytes(audio)),
            (None, Some(texts)) => Input::Texts(texts),
            (None, None) => return Err(bad("missing file part 'audio' or 'texts'".into())),
            (Some(_), Some(_)) => {
                return Err(bad("give one file part: 'audio' or 'texts'".into()));
            }
        };
        Ok(Self {
            pipeline: pipeline.ok_or_else(|| bad("missing form part 'pipeline'".into()))?,
            input,
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
        let audio = match (name, upload.input) {
            (pipeline::SPEECH_SEGMENTS, Input::Audio(audio)) => audio,
            (pipeline::TEXT_EMBEDDINGS, Input::Texts(texts)) => {
                let (settings, job_params) = embedding_parameters(upload.parameters.as_ref())
                    .map_err(|e| ApiError::InvalidParameter(e.0))?;
                let webhook = self.webhook(upload.webhook.as_ref())?;
                let mut job = self.text_embeddings_job(texts.texts, texts.ids, settings)?;
                job.options.deadline_ms = JobParameters::deadline_ms(&job_params, now_ms());
                job.webhook = webhook;
                return Ok(job);
            }
            (pipeline::SPEECH_SEGMENTS, Input::Texts(_)) => {
                return Err(ApiError::InvalidRequest(
                    "speech_segments takes a recording: a file part or member 'audio'".into(),
                ));
            }
            (pipeline::TEXT_EMBEDDINGS, Input::Audio(_)) => {
                return Err(ApiError::InvalidRequest(
                    "text_embeddings takes texts: a file part or member 'texts'".into(),
                ));
            }
            _ => return Err(ApiError::UnknownPipeline(name.chars().take(64).collect())),
        };
        let (settings, job_params) = speech_parameters(upload.parameters.as_ref())
            .map_err(|e| ApiError::InvalidParameter(e.0))?;
        let webhook = self.webhook(upload.webhook.as_ref())?;
        // A recording by URL is probed by the worker once fetched; its upload starts empty.
        let (audio, audio_url) = match audio {
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
    /// `speech_segments`: the recording (WAV, FLAC, MP3, Ogg Vorbis).
    #[schema(value_type = Option<String>, format = Binary)]
    audio: Option<Vec<u8>>,
    /// `text_embeddings`: UTF-8 texts, one per line, or JSON Lines `{"id", "text"}` (the ids
    /// are echoed in the result).
    #[schema(value_type = Option<String>, format = Binary)]
    texts: Option<Vec<u8>>,
    /// A JSON object: the pipeline's parameters.
    parameters: Option<String>,
    /// A JSON object: the job's webhook, `{"url", "events"?}`.
    webhook: Option<String>,
}
