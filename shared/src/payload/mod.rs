//! The binary form jobs and results take inside the system: the API converts a JSON request
//! once, while validating it; Redis stores bytes; the worker hands the bytes to ONNX Runtime
//! without parsing text and stores its outputs as bytes; JSON is rendered only for a client.
//!
//! A frame is `magic (4 bytes) | header length (u32 LE) | header (JSON) | tensor bytes`: the
//! small header names the tensors (name, datatype, shape, in order) and everything else of the
//! request; each tensor's data follows, raw little-endian, `element count × datatype size`
//! bytes, in header order (BOOL: one byte, 0 or 1). A BYTES tensor's elements vary in length:
//! each is a u32 little-endian length and then its bytes, as in the Open Inference Protocol, so
//! its extent is found by walking `element count` length prefixes (which also checks that the
//! data holds as many elements as the shape says).
//!
//! An input given by URL has no bytes in the frame: the header lists it under `urls`, and the
//! worker fetches it and writes the frame anew, with the bytes, before the job runs.

mod request;
mod result;

pub use result::{decode_result, encode_result, result_to_json};

use serde::{Deserialize, Serialize};

use crate::datatype::DataType;
use crate::job::JobParameters;
use crate::model::{InputView, ModelInfo, ValidationError, element_count};

/// Starts a job payload.
pub const JOB_MAGIC: &[u8; 4] = b"IQJ1";
/// Starts a stored result written with a JSON header (read, no longer written).
pub const RESULT_MAGIC: &[u8; 4] = b"IQR1";
/// Starts a stored result with a compact binary header: what workers write. A record's fields
/// stay in Redis's compact hash encoding only while every value is at most
/// `hash-max-listpack-value` (64) bytes, so a small model's result (ten FP32 outputs: 60
/// bytes) must not spend 60 bytes on a JSON header.
pub const RESULT_MAGIC_COMPACT: &[u8; 4] = b"IQR2";

/// A tensor's name, datatype and shape; its bytes follow the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorHeader {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// Everything of a job but its tensor data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobHeader {
    pub model: String,
    pub inputs: Vec<TensorHeader>,
    /// The outputs the client asked for; `None` = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<JobParameters>,
    /// Inputs the worker fetches before the job runs; they have no bytes in the frame.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<InputUrl>,
}

/// An input given by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputUrl {
    pub input: String,
    pub url: String,
}

impl JobHeader {
    /// The URL input `name` is fetched from, if it is given by URL.
    pub fn url_of(&self, name: &str) -> Option<&str> {
        self.urls
            .iter()
            .find(|u| u.input == name)
            .map(|u| u.url.as_str())
    }
}

/// The header of a stored result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultHeader {
    pub outputs: Vec<TensorHeader>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed frame: {0}")]
pub struct FrameError(&'static str);

fn frame(magic: &[u8; 4], header: &impl Serialize, data_len: usize) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("headers always serialize");
    let mut out = Vec::with_capacity(8 + header.len() + data_len);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out
}

/// Splits a frame into its header and its tensors' bytes, checking their lengths. A tensor
/// for which `by_url` holds has no bytes (an empty part).
fn unframe<'a, H: Deserialize<'a>>(
    magic: &[u8; 4],
    bytes: &'a [u8],
    tensors: impl Fn(&H) -> &[TensorHeader],
    by_url: impl Fn(&H, &str) -> bool,
) -> Result<(H, Vec<&'a [u8]>), FrameError> {
    let rest = bytes
        .strip_prefix(magic.as_slice())
        .ok_or(FrameError("wrong magic"))?;
    let (len, rest) = rest.split_at_checked(4).ok_or(FrameError("truncated"))?;
    let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
    let (header, mut data) = rest
        .split_at_checked(len)
        .ok_or(FrameError("truncated header"))?;
    let header: H = serde_json::from_slice(header).map_err(|_| FrameError("bad header"))?;
    let mut parts = Vec::new();
    for t in tensors(&header) {
        if by_url(&header, &t.name) {
            parts.push(&data[..0]);
            continue;
        }
        let count = element_count(&t.shape).ok_or(FrameError("invalid shape"))?;
        let n = t
            .datatype
            .encoded_len(count, data)
            .ok_or(FrameError("truncated or malformed data"))?;
        let (part, rest) = data.split_at(n);
        parts.push(part);
        data = rest;
    }
    if !data.is_empty() {
        return Err(FrameError("trailing bytes"));
    }
    Ok((header, parts))
}

/// Is `bytes` a binary job payload (rather than a JSON request from an older API)?
pub fn is_job_frame(bytes: &[u8]) -> bool {
    bytes.starts_with(JOB_MAGIC)
}

/// Is `bytes` a binary result (rather than JSON from an older worker)?
pub fn is_result_frame(bytes: &[u8]) -> bool {
    bytes.starts_with(RESULT_MAGIC_COMPACT) || bytes.starts_with(RESULT_MAGIC)
}

/// Builds a job payload from a header and each input's bytes, in header order (checked by the
/// caller against the header's shapes and datatypes).
pub fn encode_job(header: &JobHeader, data: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let total = data.iter().map(|d| d.as_ref().len()).sum();
    let mut out = frame(JOB_MAGIC, header, total);
    for d in data {
        out.extend_from_slice(d.as_ref());
    }
    out
}

impl ModelInfo {
    /// Checks a binary payload's header against the model, as
    /// [`ModelInfo::validate_structure`] checks a JSON request; the data lengths are
    /// guaranteed by the frame itself.
    pub fn validate_header(&self, header: &JobHeader) -> Result<(), ValidationError> {
        let inputs: Vec<InputView<'_>> = header
            .inputs
            .iter()
            .map(|t| InputView {
                name: &t.name,
                datatype: t.datatype.as_str(),
                shape: &t.shape,
            })
            .collect();
        self.check_structure(&inputs, header.outputs.iter().flatten().map(String::as_str))
    }
}

/// A binary job payload's header and each input's bytes.
pub fn decode_job(bytes: &[u8]) -> Result<(JobHeader, Vec<&[u8]>), FrameError> {
    unframe(
        JOB_MAGIC,
        bytes,
        |h: &JobHeader| &h.inputs,
        |h, name| h.url_of(name).is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datatype::TensorData;
    use crate::egress::Allow;
    use crate::job::JobRequest;
    use crate::model::TensorSpec;

    fn model() -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            description: None,
            inputs: vec![
                TensorSpec {
                    name: "x".into(),
                    datatype: DataType::Fp32,
                    shape: vec![-1, 2],
                },
                TensorSpec {
                    name: "n".into(),
                    datatype: DataType::Int64,
                    shape: vec![],
                },
            ],
            outputs: vec![],
            batching: false,
            max_batch_size: 1,
            sha256: None,
        }
    }

    #[test]
    fn a_json_request_becomes_a_frame_with_raw_tensors() {
        let body = r#"{"model":"m","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,"NaN"]]},{"name":"n","shape":[],"datatype":"INT64","data":[7]}],"parameters":{"timeout_ms":5}}"#;
        let req: JobRequest<'_> = serde_json::from_str(body).unwrap();
        let bytes = model().encode_request(&req, &Allow::default()).unwrap();
        assert!(is_job_frame(&bytes));
        let (header, parts) = decode_job(&bytes).unwrap();
        assert_eq!(header.model, "m");
        assert_eq!(header.inputs[0].shape, vec![2, 2]);
        assert_eq!(header.parameters.unwrap().timeout_ms, Some(5));
        let TensorData::Fp32(x) = TensorData::from_le_bytes(DataType::Fp32, parts[0]).unwrap()
        else {
            panic!()
        };
        assert_eq!(x[..3], [1.0, 2.0, 3.0]);
        assert!(x[3].is_nan());
        assert_eq!(parts[1], 7i64.to_le_bytes());
    }

    #[test]
    fn invalid_data_is_reported_per_input() {
        let body = r#"{"model":"m","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1]},{"name":"n","shape":[],"datatype":"INT64","data":[7]}]}"#;
        let req: JobRequest<'_> = serde_json::from_str(body).unwrap();
        assert_eq!(
            model()
                .encode_request(&req, &Allow::default())
                .unwrap_err()
                .code()
                .as_str(),
            "data_length_mismatch"
        );
    }

    #[test]
    fn half_floats_and_bytes_travel_in_frames() {
        let spec = |name: &str, datatype| TensorSpec {
            name: name.into(),
            datatype,
            shape: vec![-1],
        };
        let model = ModelInfo {
            inputs: vec![
                spec("h", DataType::Fp16),
                spec("b", DataType::Bf16),
                spec("s", DataType::Bytes),
            ],
            ..model()
        };
        let body = r#"{"model":"m","inputs":[{"name":"h","shape":[3],"datatype":"FP16","data":[1.5,"-Infinity",65504]},{"name":"b","shape":[2],"datatype":"BF16","data":[-2,0.5]},{"name":"s","shape":[2],"datatype":"BYTES","data":["héllo",""]}]}"#;
        let req: JobRequest<'_> = serde_json::from_str(body).unwrap();
        let bytes = model.encode_request(&req, &Allow::default()).unwrap();
        let (header, parts) = decode_job(&bytes).unwrap();
        assert_eq!(parts[0], [0x00, 0x3E, 0x00, 0xFC, 0xFF, 0x7B]);
        assert_eq!(parts[1], [0x00, 0xC0, 0x00, 0x3F]);
        assert_eq!(parts[2], b"\x06\0\0\0h\xC3\xA9llo\0\0\0\0");

        // The same tensors as a result render as the JSON they came from.
        let len = parts.iter().map(|p| p.len()).sum();
        let result = encode_result(header.inputs.clone(), len, |out| {
            parts.iter().for_each(|p| out.extend_from_slice(p))
        });
        assert_eq!(
            result_to_json(&result).unwrap(),
            r#"{"outputs":[{"name":"h","shape":[3],"datatype":"FP16","data":[1.5,"-Infinity",65504.0]},{"name":"b","shape":[2],"datatype":"BF16","data":[-2.0,0.5]},{"name":"s","shape":[2],"datatype":"BYTES","data":["héllo",""]}]}"#
        );

        // A BYTES tensor holding fewer elements than its shape, or bytes that are not text,
        // does not frame.
        let mut short = header.clone();
        short.inputs[2].shape = vec![3];
        assert_eq!(
            decode_job(&encode_job(&short, &parts)).unwrap_err(),
            FrameError("truncated or malformed data")
        );
        let not_text = [parts[0], parts[1], b"\x01\0\0\0\xFF\0\0\0\0"];
        assert!(decode_job(&encode_job(&header, &not_text)).is_err());
        // One element too many is left over.
        let extra = [parts[0], parts[1], b"\x01\0\0\0a\0\0\0\0\0\0\0\0"];
        assert_eq!(
            decode_job(&encode_job(&header, &extra)).unwrap_err(),
            FrameError("trailing bytes")
        );
        let wrong_count = r#"{"model":"m","inputs":[{"name":"h","shape":[1],"datatype":"FP16","data":[1]},{"name":"b","shape":[1],"datatype":"BF16","data":[1]},{"name":"s","shape":[3],"datatype":"BYTES","data":["a","b"]}]}"#;
        let req: JobRequest<'_> = serde_json::from_str(wrong_count).unwrap();
        assert_eq!(
            model
                .encode_request(&req, &Allow::default())
                .unwrap_err()
                .code()
                .as_str(),
            "data_length_mismatch"
        );
    }

    #[test]
    fn results_render_as_json_and_bad_frames_are_refused() {
        let mut data = Vec::new();
        let bytes = encode_result(
            vec![TensorHeader {
                name: "y".into(),
                datatype: DataType::Fp64,
                shape: vec![2],
            }],
            16,
            |out| {
                crate::datatype::DataRef::Fp64(&[0.5, f64::INFINITY]).write_le_bytes(out);
                data.extend_from_slice(out);
            },
        );
        assert_eq!(
            result_to_json(&bytes).unwrap(),
            r#"{"outputs":[{"name":"y","shape":[2],"datatype":"FP64","data":[0.5,"Infinity"]}]}"#
        );
        assert!(result_to_json(&bytes[..bytes.len() - 1]).is_err());
        assert!(result_to_json(b"IQR1").is_err());
        assert!(decode_job(&bytes).is_err());
    }
}
