//! The Open Inference Protocol v2 inference request and response bodies, with the binary tensor
//! data extension: a JSON header (`Inference-Header-Content-Length` bytes) followed by the raw
//! tensors that declare a `binary_data_size`, in the order they appear in the JSON.

use inferq_shared::datatype::{DataType, TensorData};
use inferq_shared::model::element_count;
use inferq_shared::payload::TensorHeader;
use inferq_shared::tensor::parse_le_bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::OipError;
pub(crate) use crate::http::body::HEADER_LENGTH;

/// An inference request (`$inference_request`). `parameters` may hold `timeout_ms` and
/// `binary_data_output`; other parameters are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "42",
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
    "outputs": [{"name": "y"}]
}))]
pub(crate) struct InferRequest<'a> {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    pub(crate) inputs: Vec<RequestInput<'a>>,
    #[serde(default)]
    pub(crate) outputs: Option<Vec<RequestOutput>>,
}

/// An input tensor: `data` (flat or nested, row-major), or `parameters.binary_data_size` with
/// the bytes after the JSON part.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RequestInput<'a> {
    pub(crate) name: String,
    pub(crate) shape: Vec<i64>,
    #[schema(schema_with = inferq_shared::model::datatype_schema)]
    pub(crate) datatype: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) parameters: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    #[schema(value_type = Option<Vec<Value>>)]
    pub(crate) data: Option<&'a RawValue>,
}

/// A requested output; `parameters.binary_data` asks for it in binary.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RequestOutput {
    pub(crate) name: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) parameters: Option<Map<String, Value>>,
}

fn flag(params: Option<&Map<String, Value>>, key: &str) -> Option<bool> {
    params.and_then(|p| p.get(key)).and_then(Value::as_bool)
}

/// Splits a body into its JSON part and the binary data after it.
pub(crate) fn split_body<'a>(
    body: &'a [u8],
    header_length: Option<&str>,
) -> Result<(&'a [u8], &'a [u8]), OipError> {
    let Some(h) = header_length else {
        return Ok((body, &[]));
    };
    let n: usize = h
        .trim()
        .parse()
        .map_err(|_| OipError::bad(format!("{HEADER_LENGTH} is not a byte count: {h:?}")))?;
    if n == 0 || n > body.len() {
        return Err(OipError::bad(format!(
            "{HEADER_LENGTH} is {n}, but the body holds {} bytes (raw binary requests are not supported)",
            body.len()
        )));
    }
    Ok(body.split_at(n))
}

impl InferRequest<'_> {
    /// Each input's header and little-endian bytes, in request order: binary chunks taken from
    /// `binary` in order, JSON `data` converted.
    pub(crate) fn tensors(
        &self,
        mut binary: &[u8],
    ) -> Result<Vec<(TensorHeader, Vec<u8>)>, OipError> {
        let mut out = Vec::with_capacity(self.inputs.len());
        for t in &self.inputs {
            let datatype = DataType::parse(&t.datatype).ok_or_else(|| {
                OipError::bad(format!(
                    "input '{}': datatype {} is not supported",
                    t.name, t.datatype
                ))
            })?;
            let count = element_count(&t.shape).ok_or_else(|| {
                OipError::bad(format!("input '{}': invalid shape {:?}", t.name, t.shape))
            })?;
            let size = t
                .parameters
                .as_ref()
                .and_then(|p| p.get("binary_data_size"));
            let bytes = match (size, t.data) {
                (Some(size), _) => {
                    let size = size.as_u64().ok_or_else(|| {
                        OipError::bad(format!(
                            "input '{}': binary_data_size must be a byte count",
                            t.name
                        ))
                    })? as usize;
                    if size > binary.len() {
                        return Err(OipError::bad(format!(
                            "input '{}': binary_data_size {size} runs past the end of the body",
                            t.name
                        )));
                    }
                    let (chunk, rest) = binary.split_at(size);
                    binary = rest;
                    // BYTES: the chunk must hold exactly `count` length-prefixed text elements.
                    if datatype.encoded_len(count, chunk) != Some(size) {
                        let needs = match datatype.size() {
                            Some(s) => count.saturating_mul(s).to_string(),
                            None => format!(
                                "{count} elements, each a u32 little-endian length and then that many bytes of UTF-8 text without NUL"
                            ),
                        };
                        return Err(OipError::bad(format!(
                            "input '{}': {size} bytes of binary data, shape {:?} of {datatype} needs {needs}",
                            t.name, t.shape,
                        )));
                    }
                    chunk.to_vec()
                }
                (None, Some(raw)) => {
                    let (bytes, got) = parse_le_bytes(datatype, raw, count)
                        .map_err(|e| OipError::bad(format!("input '{}': {e}", t.name)))?;
                    if got != count {
                        return Err(OipError::bad(format!(
                            "input '{}': data holds {got} values, shape {:?} needs {count}",
                            t.name, t.shape
                        )));
                    }
                    bytes
                }
                (None, None) => {
                    return Err(OipError::bad(format!(
                        "input '{}' has neither data nor binary_data_size",
                        t.name
                    )));
                }
            };
            out.push((
                TensorHeader {
                    name: t.name.clone(),
                    datatype,
                    shape: t.shape.clone(),
                },
                bytes,
            ));
        }
        if !binary.is_empty() {
            return Err(OipError::bad(format!(
                "{} bytes of binary data follow the inputs that declared binary_data_size",
                binary.len()
            )));
        }
        Ok(out)
    }

    /// Whether output `name` is to be returned as binary: its own `binary_data` parameter,
    /// else the request's `binary_data_output`, else JSON.
    pub(crate) fn binary_output(&self, name: &str) -> bool {
        let own = self
            .outputs
            .iter()
            .flatten()
            .find(|o| o.name == name)
            .and_then(|o| flag(o.parameters.as_ref(), "binary_data"));
        own.or_else(|| flag(self.parameters.as_ref(), "binary_data_output"))
            .unwrap_or(false)
    }

    /// `timeout_ms` from the request parameters.
    pub(crate) fn timeout_ms(&self) -> Option<u64> {
        self.parameters
            .as_ref()
            .and_then(|p| p.get("timeout_ms"))
            .and_then(Value::as_u64)
    }
}

/// An inference response (`$inference_response`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InferResponse {
    pub(crate) model_name: String,
    pub(crate) model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) outputs: Vec<ResponseOutput>,
}

/// An output tensor: `data` (flat, row-major; floats JSON cannot spell are `"NaN"`,
/// `"Infinity"`, `"-Infinity"`), or `parameters.binary_data_size` with the bytes after the JSON.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResponseOutput {
    pub(crate) name: String,
    #[schema(schema_with = inferq_shared::model::datatype_schema)]
    pub(crate) datatype: DataType,
    pub(crate) shape: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Value>>)]
    pub(crate) data: Option<Box<RawValue>>,
}

/// Renders outputs as JSON `data` or as binary chunks (returned in order), as asked.
pub(crate) fn render_outputs(
    tensors: Vec<(TensorHeader, &[u8])>,
    binary: impl Fn(&str) -> bool,
) -> Result<(Vec<ResponseOutput>, Vec<u8>), OipError> {
    let mut outputs = Vec::with_capacity(tensors.len());
    let mut chunks = Vec::new();
    for (t, bytes) in tensors {
        let (parameters, data) = if binary(&t.name) {
            chunks.extend_from_slice(bytes);
            (
                Some(serde_json::json!({ "binary_data_size": bytes.len() })),
                None,
            )
        } else {
            let data = TensorData::from_le_bytes(t.datatype, bytes)
                .ok_or_else(|| OipError::internal("a stored output has a bad length"))?;
            let json = serde_json::to_string(&data.as_data_ref())
                .map_err(|e| OipError::internal(format!("rendering an output: {e}")))?;
            let raw = RawValue::from_string(json)
                .map_err(|e| OipError::internal(format!("rendering an output: {e}")))?;
            (None, Some(raw))
        };
        outputs.push(ResponseOutput {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
            parameters,
            data,
        });
    }
    Ok((outputs, chunks))
}
