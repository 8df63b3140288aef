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

use serde::{Deserialize, Serialize};

use crate::datatype::{DataType, TensorData};
use crate::job::JobParameters;
use crate::model::{InputView, ModelInfo, ValidationError, element_count};
use crate::tensor::OutputTensor;

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

/// Builds a result frame; `write` appends each output's bytes in `outputs` order.
///
/// The compact header: the number of outputs (u8), then per output its name (u8 length, then
/// UTF-8), its datatype (u8: the index in [`DataType::ALL`]) and its shape (u8 rank, then each
/// dimension as an unsigned LEB128 varint). Outputs beyond what it can say (more than 255, a
/// name over 255 bytes, a negative dimension) are written with a JSON header instead.
pub fn encode_result(
    outputs: Vec<TensorHeader>,
    data_len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = match compact_header(&outputs, data_len) {
        Some(out) => out,
        None => frame(RESULT_MAGIC, &ResultHeader { outputs }, data_len),
    };
    write(&mut out);
    out
}

fn compact_header(outputs: &[TensorHeader], data_len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(5 + outputs.len() * 12 + data_len);
    out.extend_from_slice(RESULT_MAGIC_COMPACT);
    out.push(u8::try_from(outputs.len()).ok()?);
    for t in outputs {
        out.push(u8::try_from(t.name.len()).ok()?);
        out.extend_from_slice(t.name.as_bytes());
        let code = DataType::ALL.iter().position(|d| *d == t.datatype)?;
        out.push(u8::try_from(code).ok()?);
        out.push(u8::try_from(t.shape.len()).ok()?);
        for &dim in &t.shape {
            let mut v = u64::try_from(dim).ok()?;
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
    }
    Some(out)
}

/// Reads a compact result header; returns it and the bytes after it.
fn read_compact_header(mut b: &[u8]) -> Result<(ResultHeader, &[u8]), FrameError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
        let (head, rest) = b
            .split_at_checked(n)
            .ok_or(FrameError("truncated header"))?;
        *b = rest;
        Ok(head)
    }
    let byte = |b: &mut &[u8]| take(b, 1).map(|v| v[0]);
    let count = byte(&mut b)?;
    let mut outputs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = byte(&mut b)? as usize;
        let name = std::str::from_utf8(take(&mut b, len)?)
            .map_err(|_| FrameError("bad header"))?
            .to_owned();
        let datatype = *DataType::ALL
            .get(byte(&mut b)? as usize)
            .ok_or(FrameError("bad header"))?;
        let rank = byte(&mut b)?;
        let mut shape = Vec::with_capacity(rank as usize);
        for _ in 0..rank {
            let (mut v, mut shift) = (0u64, 0u32);
            loop {
                let byte = byte(&mut b)?;
                if shift > 56 {
                    return Err(FrameError("bad header"));
                }
                v |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            shape.push(i64::try_from(v).map_err(|_| FrameError("bad header"))?);
        }
        outputs.push(TensorHeader {
            name,
            datatype,
            shape,
        });
    }
    Ok((ResultHeader { outputs }, b))
}

/// A binary result's header and each output's bytes (either header form).
pub fn decode_result(bytes: &[u8]) -> Result<(ResultHeader, Vec<&[u8]>), FrameError> {
    let Some(rest) = bytes.strip_prefix(RESULT_MAGIC_COMPACT.as_slice()) else {
        return unframe(
            RESULT_MAGIC,
            bytes,
            |h: &ResultHeader| &h.outputs,
            |_, _| false,
        );
    };
    let (header, mut data) = read_compact_header(rest)?;
    let mut parts = Vec::with_capacity(header.outputs.len());
    for t in &header.outputs {
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

/// Renders a binary result as `{"outputs": [<JSON tensor>, ...]}` for a client.
pub fn result_to_json(bytes: &[u8]) -> Result<String, FrameError> {
    let (header, parts) = decode_result(bytes)?;
    let data: Vec<TensorData> = header
        .outputs
        .iter()
        .zip(&parts)
        .map(|(t, b)| TensorData::from_le_bytes(t.datatype, b).ok_or(FrameError("bad data length")))
        .collect::<Result<_, _>>()?;
    #[derive(Serialize)]
    struct Outputs<'a> {
        outputs: Vec<OutputTensor<'a>>,
    }
    let out = Outputs {
        outputs: header
            .outputs
            .iter()
            .zip(&data)
            .map(|(t, d)| OutputTensor {
                name: &t.name,
                shape: &t.shape,
                datatype: t.datatype,
                data: d.as_data_ref(),
            })
            .collect(),
    };
    Ok(serde_json::to_string(&out).expect("outputs always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn a_small_result_fits_a_compact_hash_value_and_reads_back() {
        let outputs = vec![TensorHeader {
            name: "output".into(),
            datatype: DataType::Fp32,
            shape: vec![1, 10],
        }];
        let data: Vec<u8> = (0..10u8).flat_map(|i| f32::from(i).to_le_bytes()).collect();
        let compact = encode_result(outputs.clone(), data.len(), |o| o.extend_from_slice(&data));
        assert!(compact.len() <= 64, "{} bytes", compact.len());
        let (header, parts) = decode_result(&compact).unwrap();
        assert_eq!((header.outputs, parts), (outputs.clone(), vec![&data[..]]));
        // Results written with a JSON header still read.
        let mut old = frame(RESULT_MAGIC, &ResultHeader { outputs }, data.len());
        old.extend_from_slice(&data);
        assert_eq!(
            result_to_json(&old).unwrap(),
            result_to_json(&compact).unwrap()
        );
        // The datatype codes are positions in `DataType::ALL`: stored results depend on them.
        let names: Vec<&str> = DataType::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            names,
            [
                "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                "FP16", "FP32", "FP64", "BF16", "BYTES"
            ]
        );
        // Large dimensions take several varint bytes and come back whole.
        let big = vec![TensorHeader {
            name: "x".into(),
            datatype: DataType::Uint8,
            shape: vec![0, 300, 1 << 40],
        }];
        let compact = encode_result(big.clone(), 0, |_| {});
        assert_eq!(decode_result(&compact).unwrap().0.outputs, big);
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
