//! Built-in pipelines: worker-side code around a model (decode, resample, a model over many
//! windows, post-processing) that reports progress as it goes: `speech_segments` (Silero VAD
//! over a recording) and `text_embeddings` (all-MiniLM-L6-v2 over texts, whose own types live
//! in [`crate::embedding`]). This module holds what the API and the workers share about them:
//! names, parameters with their defaults and checks, the payload a pipeline job carries
//! through the queue, and the shapes of its progress and result.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::job::JobParameters;

/// The speech segments pipeline.
pub const SPEECH_SEGMENTS: &str = "speech_segments";

/// The model the speech segments pipeline runs; a worker that serves it serves the pipeline.
pub const SPEECH_MODEL: &str = "silero_vad";

/// The text embeddings pipeline.
pub const TEXT_EMBEDDINGS: &str = "text_embeddings";

/// The model the text embeddings pipeline runs (int8 weights); a worker that serves it serves
/// the pipeline.
pub const EMBEDDING_MODEL: &str = "all-MiniLM-L6-v2";

/// Every built-in pipeline name.
pub const PIPELINES: &[&str] = &[SPEECH_SEGMENTS, TEXT_EMBEDDINGS];

/// The model a built-in pipeline runs: a worker that serves it serves the pipeline.
pub fn pipeline_model(pipeline: &str) -> Option<&'static str> {
    match pipeline {
        SPEECH_SEGMENTS => Some(SPEECH_MODEL),
        TEXT_EMBEDDINGS => Some(EMBEDDING_MODEL),
        _ => None,
    }
}

/// `speech_segments` settings, every default applied and every value checked: what the worker
/// runs with. Mirrors the parameters of the silero-vad package's `get_speech_timestamps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeechSettings {
    /// Speech when the model's probability is at least this.
    pub threshold: f64,
    /// Inside speech, silence when the probability is below this.
    pub neg_threshold: f64,
    /// Segments shorter than this are dropped.
    pub min_speech_duration_ms: u64,
    /// Silence this long ends a segment.
    pub min_silence_duration_ms: u64,
    /// Padding added on each side of a segment.
    pub speech_pad_ms: u64,
    /// Longer segments are split; `None` = unlimited.
    pub max_speech_duration_s: Option<f64>,
    /// The rate the audio is resampled to and the model runs at: 16000 or 8000.
    pub sampling_rate: u32,
}

impl Default for SpeechSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech_duration_ms: 250,
            min_silence_duration_ms: 100,
            speech_pad_ms: 30,
            max_speech_duration_s: None,
            sampling_rate: 16000,
        }
    }
}

/// One parameter as `GET /pipelines` describes it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParameterInfo {
    pub name: &'static str,
    /// `number` or `integer`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The default; `null` when it is derived (`neg_threshold`) or unlimited.
    #[schema(value_type = Value)]
    pub default: Value,
    pub description: &'static str,
}

/// A built-in pipeline as `GET /pipelines` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelineInfo {
    pub name: &'static str,
    pub description: &'static str,
    /// The model it runs (from the worker's models directory).
    pub model: &'static str,
    /// The file part (multipart) or JSON member holding the input.
    pub input: &'static str,
    /// Input formats it decodes.
    pub formats: Vec<&'static str>,
    pub parameters: Vec<ParameterInfo>,
}

/// A parameter of a pipeline as `GET /pipelines` describes it.
pub(crate) fn parameter(
    name: &'static str,
    kind: &'static str,
    default: Value,
    description: &'static str,
) -> ParameterInfo {
    ParameterInfo {
        name,
        kind,
        default,
        description,
    }
}

/// `speech_segments` as `GET /pipelines` lists it.
pub fn speech_info() -> PipelineInfo {
    let d = SpeechSettings::default();
    let p = parameter;
    PipelineInfo {
        name: SPEECH_SEGMENTS,
        description: "Speech segments of a recording, by Silero VAD: the audio is decoded, mixed \
            to mono and resampled, the model runs over it window after window (512 samples at \
            16 kHz, 256 at 8 kHz) and the probabilities become segments exactly as the silero-vad \
            package's get_speech_timestamps makes them. Result: {\"segments\": [{\"start\", \
            \"end\"}], \"duration\", \"sample_rate\"}, in seconds.",
        model: SPEECH_MODEL,
        input: "audio",
        formats: vec!["wav", "flac", "mp3", "ogg/vorbis"],
        parameters: vec![
            p(
                "threshold",
                "number",
                d.threshold.into(),
                "speech when the probability is at least this; in (0, 1)",
            ),
            p(
                "neg_threshold",
                "number",
                Value::Null,
                "inside speech, silence when the probability is below this; in (0, 1); default \
               threshold - 0.15, at least 0.01",
            ),
            p(
                "min_speech_duration_ms",
                "integer",
                d.min_speech_duration_ms.into(),
                "segments shorter than this are dropped",
            ),
            p(
                "min_silence_duration_ms",
                "integer",
                d.min_silence_duration_ms.into(),
                "silence this long ends a segment",
            ),
            p(
                "speech_pad_ms",
                "integer",
                d.speech_pad_ms.into(),
                "padding added on each side of a segment",
            ),
            p(
                "max_speech_duration_s",
                "number",
                Value::Null,
                "longer segments are split (at the longest silence inside when there is one); \
               default unlimited",
            ),
            p(
                "sampling_rate",
                "integer",
                d.sampling_rate.into(),
                "rate the model runs at: 16000 or 8000",
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
        ],
    }
}

/// A parameter that is unknown or out of range; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParameterError(pub String);

fn number(name: &str, v: &Value) -> Result<f64, ParameterError> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| ParameterError(format!("parameter '{name}' must be a number")))
}

pub(crate) fn integer(name: &str, v: &Value) -> Result<u64, ParameterError> {
    v.as_u64()
        .ok_or_else(|| ParameterError(format!("parameter '{name}' must be a non-negative integer")))
}

fn probability(name: &str, v: &Value) -> Result<f64, ParameterError> {
    let x = number(name, v)?;
    if x > 0.0 && x < 1.0 {
        Ok(x)
    } else {
        Err(ParameterError(format!(
            "parameter '{name}' must be between 0 and 1 (exclusive), got {x}"
        )))
    }
}

/// Reads `speech_segments` parameters (a JSON object, or absent) into its settings and the
/// job parameters every job has (`timeout_ms`, `deadline`). Unknown names and values out of
/// range are errors.
pub fn speech_parameters(
    params: Option<&Map<String, Value>>,
) -> Result<(SpeechSettings, JobParameters), ParameterError> {
    let mut s = SpeechSettings::default();
    let mut job = JobParameters::default();
    let mut neg = None;
    for (name, v) in params.into_iter().flatten() {
        match name.as_str() {
            "threshold" => s.threshold = probability(name, v)?,
            "neg_threshold" => neg = Some(probability(name, v)?),
            "min_speech_duration_ms" => s.min_speech_duration_ms = integer(name, v)?,
            "min_silence_duration_ms" => s.min_silence_duration_ms = integer(name, v)?,
            "speech_pad_ms" => s.speech_pad_ms = integer(name, v)?,
            "max_speech_duration_s" => {
                let x = number(name, v)?;
                if x <= 0.0 {
                    return Err(ParameterError(format!(
                        "parameter 'max_speech_duration_s' must be positive, got {x}"
                    )));
                }
                s.max_speech_duration_s = Some(x);
            }
            "sampling_rate" => match v.as_u64() {
                Some(r @ (8000 | 16000)) => s.sampling_rate = r as u32,
                _ => {
                    return Err(ParameterError(format!(
                        "parameter 'sampling_rate' must be 16000 or 8000, got {v}"
                    )));
                }
            },
            "timeout_ms" => job.timeout_ms = Some(integer(name, v)?),
            "deadline" => job.deadline = Some(integer(name, v)?),
            other => {
                let known: Vec<&str> = speech_info().parameters.iter().map(|p| p.name).collect();
                return Err(ParameterError(format!(
                    "unknown parameter '{}' (known: {})",
                    other.chars().take(64).collect::<String>(),
                    known.join(", ")
                )));
            }
        }
    }
    // As get_speech_timestamps: threshold - 0.15, at least 0.01.
    s.neg_threshold = neg.unwrap_or((s.threshold - 0.15).max(0.01));
    Ok((s, job))
}

/// What a pipeline job carries through the queue (the stream entry's payload), as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineJob {
    pub pipeline: String,
    pub settings: SpeechSettings,
    /// Size of the upload, so the worker knows what to expect.
    pub upload_bytes: u64,
    /// The recording comes by URL: the worker fetches it into the (empty) upload before it
    /// runs the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_url: Option<String>,
}

/// A running pipeline's progress: seconds of audio (`speech_segments`), or texts embedded
/// (`text_embeddings`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Seconds of audio processed so far, or texts embedded so far.
    pub done: f64,
    /// Seconds of audio in the recording (`null` while the format does not say it up front),
    /// or texts in the job.
    pub total: Option<f64>,
}

/// One speech segment, in seconds (millisecond precision).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
}

/// The result of a `speech_segments` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpeechResult {
    pub segments: Vec<Segment>,
    /// Seconds of audio in the recording.
    pub duration: f64,
    /// The rate the model ran at.
    pub sample_rate: u32,
}

/// Rounds seconds to milliseconds as Python's `round(x, 3)` does: the exact binary value,
/// ties to even (Rust's fixed-precision formatting rounds the same way).
pub fn round_ms(seconds: f64) -> f64 {
    format!("{seconds:.3}").parse().unwrap_or(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<SpeechSettings, ParameterError> {
        speech_parameters(v.as_object()).map(|(s, _)| s)
    }

    #[test]
    fn defaults_follow_get_speech_timestamps() {
        let s = parse(serde_json::json!({})).unwrap();
        assert_eq!(s.neg_threshold, 0.5 - 0.15);
        let s = parse(serde_json::json!({"threshold": 0.1})).unwrap();
        assert_eq!(s.neg_threshold, 0.01);
        let s = parse(serde_json::json!({"threshold": 0.9, "neg_threshold": 0.2})).unwrap();
        assert_eq!((s.threshold, s.neg_threshold), (0.9, 0.2));
    }

    #[test]
    fn wrong_parameters_are_refused_with_a_reason() {
        for (v, needle) in [
            (serde_json::json!({"threshold": 1.0}), "between 0 and 1"),
            (serde_json::json!({"threshold": 0}), "between 0 and 1"),
            (serde_json::json!({"threshold": "x"}), "must be a number"),
            (serde_json::json!({"sampling_rate": 44100}), "16000 or 8000"),
            (
                serde_json::json!({"min_speech_duration_ms": -1}),
                "non-negative integer",
            ),
            (serde_json::json!({"bogus": 1}), "unknown parameter 'bogus'"),
        ] {
            let e = parse(v).unwrap_err();
            assert!(e.0.contains(needle), "{e}");
        }
    }

    #[test]
    fn seconds_round_like_python() {
        // round(16424 / 16000, 3) == 1.026 and round(0.0625, 3) == 0.062 in Python.
        assert_eq!(round_ms(16424.0 / 16000.0), 1.026);
        assert_eq!(round_ms(0.0625), 0.062);
        assert_eq!(round_ms(4.446), 4.446);
    }
}
