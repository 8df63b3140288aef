//! Job payloads in, results out: decoding a request into typed input buffers and encoding
//! ONNX Runtime's outputs as the result, straight from its buffers. Runs on inference threads.

use inferq_shared::job::{ErrorCode, JobError, JobRequest};
use inferq_shared::model::{ModelInfo, element_count};
use inferq_shared::payload::{self, TensorHeader};
use inferq_shared::tensor::{DataRef, DataType, TensorData, parse_data};

use super::Ran;
use ort::session::{SessionInputValue, SessionOutputs};
use ort::value::{IntoTensorElementType, Tensor, TensorElementType, Value, ValueType};

/// A job decoded for inference: its inputs in the model's input order.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) inputs: Vec<(Vec<i64>, TensorData)>,
    /// The outputs the client asked for; `None` = all.
    pub(crate) outputs: Option<Vec<String>>,
}

impl Decoded {
    /// The rows (leading dimension) the job contributes to a batch, if it can join one: every
    /// input must agree on it.
    pub(crate) fn rows(&self) -> Option<usize> {
        let first = *self.inputs.first()?.0.first()?;
        self.inputs
            .iter()
            .all(|(shape, _)| shape.first() == Some(&first))
            .then_some(first)
            .and_then(|r| usize::try_from(r).ok())
    }

    /// Each input's shape without its leading (batch) dimension: jobs batch together when
    /// these match.
    pub(crate) fn trailing_shapes(&self) -> Vec<Vec<i64>> {
        self.inputs
            .iter()
            .map(|(s, _)| s.get(1..).unwrap_or_default().to_vec())
            .collect()
    }
}

/// A job's failure with `code` (a short hand: decoding and encoding fail in many places).
pub(crate) fn failed(code: ErrorCode, message: impl Into<String>) -> JobError {
    JobError::new(code, message)
}

/// Reads a payload and checks it against the model. The API validated it against the metadata
/// it had; the model may have changed since, so the structure is checked again here.
pub(crate) fn decode(info: &ModelInfo, payload: &[u8]) -> Result<Decoded, JobError> {
    if payload::is_job_frame(payload) {
        decode_frame(info, payload)
    } else {
        decode_json(info, payload)
    }
}

/// The binary payload the API writes: tensor bytes go to typed buffers without any text.
fn decode_frame(info: &ModelInfo, payload: &[u8]) -> Result<Decoded, JobError> {
    let (header, parts) = payload::decode_job(payload).map_err(|e| {
        failed(
            ErrorCode::InvalidRequest,
            format!("job payload is not readable: {e}"),
        )
    })?;
    #[cfg(feature = "test-hooks")]
    crate::hooks::on_decode(header.parameters.as_ref());
    info.validate_header(&header)
        .map_err(|e| failed(e.code(), e.to_string()))?;
    if let Some(u) = header.urls.first() {
        // Inputs by URL are fetched (batch/inputs.rs) before a job reaches an inference thread.
        return Err(failed(
            ErrorCode::Internal,
            format!("input '{}' was not fetched before the job ran", u.input),
        ));
    }
    let mut inputs = Vec::with_capacity(info.inputs.len());
    for spec in &info.inputs {
        let k = header
            .inputs
            .iter()
            .position(|t| t.name == spec.name)
            .expect("validated: every input is present");
        let t = &header.inputs[k];
        let data = TensorData::from_le_bytes(t.datatype, parts[k]).ok_or_else(|| {
            failed(
                ErrorCode::DataLengthMismatch,
                format!("input '{}': data is not a whole number of elements", t.name),
            )
        })?;
        inputs.push((t.shape.clone(), data));
    }
    Ok(Decoded {
        inputs,
        outputs: header.outputs,
    })
}

/// A JSON request, as an API from before binary payloads wrote it: the data arrays are read
/// once, straight into typed buffers.
fn decode_json(info: &ModelInfo, payload: &[u8]) -> Result<Decoded, JobError> {
    let req: JobRequest<'_> = serde_json::from_slice(payload).map_err(|e| {
        failed(
            ErrorCode::InvalidRequest,
            format!("job payload is not a valid request: {e}"),
        )
    })?;
    #[cfg(feature = "test-hooks")]
    crate::hooks::on_decode(req.parameters.as_ref());
    info.validate_structure(&req)
        .map_err(|e| failed(e.code(), e.to_string()))?;
    let mut inputs = Vec::with_capacity(info.inputs.len());
    for spec in &info.inputs {
        let t = req
            .inputs
            .iter()
            .find(|t| t.name == spec.name)
            .ok_or_else(|| {
                failed(
                    ErrorCode::MissingInput,
                    format!("input '{}' is missing", spec.name),
                )
            })?;
        let n = element_count(&t.shape).unwrap_or(0);
        // Inputs by URL exist only in binary payloads.
        let raw = t.data.ok_or_else(|| {
            failed(
                ErrorCode::InvalidData,
                format!("input '{}': data is missing", spec.name),
            )
        })?;
        let data = parse_data(spec.datatype, raw, n).map_err(|e| {
            failed(
                ErrorCode::InvalidData,
                format!("input '{}': {e}", spec.name),
            )
        })?;
        ModelInfo::data_length(&spec.name, &t.shape, data.len())
            .map_err(|e| failed(e.code(), e.to_string()))?;
        inputs.push((t.shape.clone(), data));
    }
    Ok(Decoded {
        inputs,
        outputs: req.outputs.map(|o| o.into_iter().map(|o| o.name).collect()),
    })
}

/// An input buffer as an ONNX Runtime value.
pub(crate) fn to_value(
    shape: Vec<i64>,
    data: TensorData,
) -> ort::Result<SessionInputValue<'static>> {
    macro_rules! convert {
        ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
            match data {
                $(TensorData::$variant(v) => Value::from_array((shape, v))?.into_dyn().into(),)*
                // Strings are copied into a tensor ONNX Runtime allocates: there is no buffer to lend it.
                TensorData::Bytes(v) => Tensor::from_string_array((shape, &*v))?.into_dyn().into(),
            }
        };
    }
    Ok(inferq_shared::for_each_datatype!(convert))
}

/// The service's datatype for an ONNX element type, if it supports it.
pub(crate) fn datatype(ty: TensorElementType) -> Option<DataType> {
    macro_rules! find {
        ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
            $(if ty == <$ty>::into_tensor_element_type() {
                return Some(DataType::$variant);
            })*
        };
    }
    inferq_shared::for_each_datatype!(find);
    (ty == TensorElementType::String).then_some(DataType::Bytes)
}

/// An output's elements: borrowed from ONNX Runtime's buffer, or, for strings (which ONNX
/// Runtime hands out only as copies), owned.
enum Elements<'a> {
    Borrowed(DataRef<'a>),
    Owned(TensorData),
}

impl Elements<'_> {
    fn view(&self) -> DataRef<'_> {
        match self {
            Self::Borrowed(d) => *d,
            Self::Owned(d) => d.as_data_ref(),
        }
    }
}

/// `elements` of an output value.
fn slice<'a>(
    value: &'a ort::value::DynValue,
    datatype: DataType,
    elements: std::ops::Range<usize>,
) -> ort::Result<Elements<'a>> {
    macro_rules! extract {
        ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
            match datatype {
                $(DataType::$variant => {
                    let (_, d) = value.try_extract_tensor::<$ty>()?;
                    Elements::Borrowed(DataRef::$variant(&d[elements]))
                })*
                DataType::Bytes => {
                    let (_, mut d) = value.try_extract_strings()?;
                    d.truncate(elements.end);
                    d.drain(..elements.start);
                    Elements::Owned(TensorData::Bytes(d))
                }
            }
        };
    }
    Ok(inferq_shared::for_each_datatype!(extract))
}

/// Writes the binary result straight from ONNX Runtime's buffers. With `rows` (`offset`,
/// `count`, `total`), only that slice of the leading dimension is written.
pub(crate) fn encode(
    info: &ModelInfo,
    outputs: &SessionOutputs<'_>,
    wanted: Option<&[String]>,
    rows: Option<(usize, usize, usize)>,
) -> Ran {
    let names: Vec<&str> = match wanted {
        Some(w) => w.iter().map(String::as_str).collect(),
        None => info.outputs.iter().map(|o| o.name.as_str()).collect(),
    };
    let mut headers = Vec::with_capacity(names.len());
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let Some(value) = outputs.get(name) else {
            return Err(failed(
                ErrorCode::InferenceError,
                format!("the model produced no output '{name}'"),
            ));
        };
        let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
            return Err(failed(
                ErrorCode::UnsupportedOutput,
                format!("output '{name}' is not a tensor"),
            ));
        };
        let Some(dt) = datatype(*ty) else {
            return Err(failed(
                ErrorCode::UnsupportedOutput,
                format!("output '{name}' has unsupported element type {ty:?}"),
            ));
        };
        let mut shape: Vec<i64> = shape.to_vec();
        let total_elems = element_count(&shape).unwrap_or(0);
        let range = match rows {
            Some((offset, count, total)) => {
                let per_row = total_elems / total.max(1);
                shape[0] = count as i64;
                offset * per_row..(offset + count) * per_row
            }
            None => 0..total_elems,
        };
        let data = slice(value, dt, range).map_err(|e| {
            failed(
                ErrorCode::InferenceError,
                format!("reading output '{name}': {e}"),
            )
        })?;
        headers.push(TensorHeader {
            name: (*name).to_owned(),
            datatype: dt,
            shape,
        });
        tensors.push(data);
    }
    let len = tensors.iter().map(|d| d.view().byte_len()).sum();
    Ok(payload::encode_result(headers, len, |out| {
        for d in &tensors {
            d.view().write_le_bytes(out);
        }
    }))
}

#[cfg(test)]
mod tests {
    use inferq_shared::payload::{JobHeader, encode_job, result_to_json};

    use super::*;
    use crate::infer::runner::Runner;
    use crate::infer::test_models;

    fn succeeded(outcome: &Ran) -> String {
        match outcome {
            Ok(result) => result_to_json(result).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fp16_jobs_batch_and_come_back_exact() {
        let models = test_models();
        let mut runner = Runner::new(&models, 1).unwrap();
        let a = r#"{"model":"half","inputs":[{"name":"x","shape":[1,4],"datatype":"FP16","data":[1,0.1,-2.5,"NaN"]}]}"#;
        let b = r#"{"model":"half","inputs":[{"name":"x","shape":[2,4],"datatype":"FP16","data":[[0,30000,40000,-1],[0.5,"Infinity",1e-7,65504]]}]}"#;
        let out = runner.run("half", &[a.as_bytes(), b.as_bytes()]);
        // 0.1 is the half 0.0999755859375; ×2 + 1 = 1.199951171875 rounds to the half
        // 1.2001953125. 40000 × 2 and 65504 × 2 overflow FP16.
        assert_eq!(
            succeeded(&out[0]),
            r#"{"outputs":[{"name":"y","shape":[1,4],"datatype":"FP16","data":[3.0,1.2001953,-4.0,"NaN"]}]}"#
        );
        assert_eq!(
            succeeded(&out[1]),
            r#"{"outputs":[{"name":"y","shape":[2,4],"datatype":"FP16","data":[1.0,60000.0,"Infinity",-1.0,2.0,"Infinity",1.0,"Infinity"]}]}"#
        );
    }

    #[test]
    fn strings_go_through_onnx_runtime_from_json_and_frames() {
        let models = test_models();
        let mut runner = Runner::new(&models, 1).unwrap();
        let json = r#"{"model":"strings","inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["hello","World 1"]}]}"#;
        let header = JobHeader {
            model: "strings".into(),
            inputs: vec![TensorHeader {
                name: "s".into(),
                datatype: DataType::Bytes,
                shape: vec![3],
            }],
            outputs: None,
            parameters: None,
            urls: Vec::new(),
        };
        let mut bytes = Vec::new();
        DataRef::Bytes(&["éa".into(), String::new(), "x\"y".into()]).write_le_bytes(&mut bytes);
        let frame = encode_job(&header, &[bytes]);
        let out = runner.run("strings", &[json.as_bytes(), &frame]);
        assert_eq!(
            succeeded(&out[0]),
            r#"{"outputs":[{"name":"upper","shape":[2],"datatype":"BYTES","data":["HELLO","WORLD 1"]}]}"#
        );
        assert_eq!(
            succeeded(&out[1]),
            r#"{"outputs":[{"name":"upper","shape":[3],"datatype":"BYTES","data":["ÉA","","X\"Y"]}]}"#
        );
    }
}
