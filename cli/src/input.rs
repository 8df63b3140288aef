//! `--input NAME=SOURCE`: reading each input from inline JSON, a JSON file or a `.npy` file,
//! and building the Open Inference Protocol tensor the job body carries.

use std::path::Path;
use std::str::FromStr;

use inferq_shared::model::ModelInfo;
use inferq_shared::tensor::{DataRef, DataType, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CliError;

/// `--input NAME=SOURCE` as typed; the source is read by [`Input::load`].
#[derive(Debug, Clone)]
pub(crate) struct InputArg {
    name: String,
    source: String,
}

impl FromStr for InputArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, source)) if !name.is_empty() && !source.is_empty() => Ok(Self {
                name: name.to_owned(),
                source: source.to_owned(),
            }),
            _ => Err(format!(
                "expected NAME=SOURCE (e.g. x=input.npy or x='[[1, 2]]'), got '{s}'"
            )),
        }
    }
}

/// An input read from its source. Its datatype may wait for the model's metadata.
#[derive(Debug)]
pub(crate) struct Input {
    name: String,
    shape: Vec<i64>,
    /// `None` for bare JSON values: the model's declared datatype is used.
    datatype: Option<String>,
    data: Data,
    /// Every element of a bare JSON value is a boolean: BOOL if the model does not say.
    all_bool: bool,
}

/// A tensor's elements: JSON passed on as written (flat or nested), or typed values read from
/// a `.npy` file.
#[derive(Debug)]
enum Data {
    Json(Value),
    Typed(TensorData),
}

/// A tensor object in a JSON source; `shape` and `datatype` may be left out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorObject {
    name: Option<String>,
    shape: Option<Vec<i64>>,
    datatype: Option<String>,
    data: Value,
}

/// The wire form of one input tensor.
#[derive(Debug, Serialize)]
pub(crate) struct WireTensor<'a> {
    name: &'a str,
    shape: &'a [i64],
    datatype: &'a str,
    data: WireData<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireData<'a> {
    Json(&'a Value),
    /// Serialized by the shared encoder: shortest round-trip floats, NaN and infinities as the
    /// strings the API accepts.
    Typed(DataRef<'a>),
}

impl Input {
    /// Reads the source of `--input`: inline JSON when it starts with `[` or `{`, else a file
    /// if one exists at that path (`.npy` by its magic bytes, otherwise JSON), else a bare JSON
    /// scalar such as `16000`.
    pub(crate) fn load(arg: &InputArg) -> Result<Self, CliError> {
        let usage = |msg: String| CliError::Usage(format!("--input {}: {msg}", arg.name));
        let source = arg.source.trim_start();
        if source.starts_with(['[', '{']) {
            let value = serde_json::from_str(source)
                .map_err(|e| usage(format!("inline JSON is not valid: {e}")))?;
            return Self::from_json(&arg.name, value).map_err(usage);
        }
        let path = Path::new(&arg.source);
        if path.is_file() {
            let bytes = std::fs::read(path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            let is_npy_name = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
            if inferq_shared::npy::is_npy(&bytes) || is_npy_name {
                let array = inferq_shared::npy::parse(&bytes)
                    .map_err(|e| usage(format!("{}: {e}", path.display())))?;
                return Ok(Self {
                    name: arg.name.clone(),
                    shape: array.shape,
                    datatype: Some(array.data.datatype().as_str().to_owned()),
                    data: Data::Typed(array.data),
                    all_bool: false,
                });
            }
            let value = serde_json::from_slice(&bytes)
                .map_err(|e| usage(format!("{} is not JSON: {e}", path.display())))?;
            return Self::from_json(&arg.name, value)
                .map_err(|e| usage(format!("{}: {e}", path.display())));
        }
        match serde_json::from_str::<Value>(source) {
            Ok(value @ (Value::Number(_) | Value::Bool(_))) => {
                Self::from_json(&arg.name, value).map_err(usage)
            }
            _ => Err(usage(format!(
                "'{}' is neither a file nor inline JSON",
                arg.source
            ))),
        }
    }

    fn from_json(name: &str, value: Value) -> Result<Self, String> {
        if value.is_object() {
            let t: TensorObject = serde_json::from_value(value).map_err(|e| {
                format!("not a tensor object {{\"shape\", \"datatype\", \"data\"}}: {e}")
            })?;
            if let Some(other) = t.name.as_deref().filter(|n| *n != name) {
                return Err(format!("the tensor object is named '{other}'"));
            }
            let shape = match t.shape {
                Some(shape) => shape,
                None => infer_shape(&t.data)?.0,
            };
            return Ok(Self {
                name: name.to_owned(),
                shape,
                datatype: t.datatype,
                data: Data::Json(as_array(t.data)),
                all_bool: false,
            });
        }
        let (shape, all_bool) = infer_shape(&value)?;
        Ok(Self {
            name: name.to_owned(),
            shape,
            datatype: None,
            data: Data::Json(as_array(value)),
            all_bool,
        })
    }

    /// Whether the datatype must come from the model's metadata.
    pub(crate) fn needs_model(&self) -> bool {
        self.datatype.is_none()
    }

    /// Settles the datatype of a bare JSON value: the model's for this input, else BOOL for
    /// booleans and FP32 for numbers.
    pub(crate) fn resolve(&mut self, model: Option<&ModelInfo>) {
        if self.datatype.is_some() {
            return;
        }
        let declared = model
            .and_then(|m| m.inputs.iter().find(|i| i.name == self.name))
            .map(|i| i.datatype);
        let fallback = if self.all_bool {
            DataType::Bool
        } else {
            DataType::Fp32
        };
        self.datatype = Some(declared.unwrap_or(fallback).as_str().to_owned());
    }

    pub(crate) fn wire(&self) -> WireTensor<'_> {
        WireTensor {
            name: &self.name,
            shape: &self.shape,
            datatype: self.datatype.as_deref().unwrap_or(DataType::Fp32.as_str()),
            data: match &self.data {
                Data::Json(v) => WireData::Json(v),
                Data::Typed(t) => WireData::Typed(t.as_data_ref()),
            },
        }
    }
}

/// `data` is always a JSON array on the wire; a scalar becomes its one element.
fn as_array(value: Value) -> Value {
    match value {
        Value::Array(_) => value,
        scalar => Value::Array(vec![scalar]),
    }
}

/// The shape a nested JSON array spells (`[]` for a scalar), and whether every element is a
/// boolean. Strings count as elements ("NaN", "Infinity"): the server judges them.
fn infer_shape(value: &Value) -> Result<(Vec<i64>, bool), String> {
    match value {
        Value::Array(items) => {
            let mut inner: Option<Vec<i64>> = None;
            let mut all_bool = true;
            for item in items {
                let (shape, bools) = infer_shape(item)?;
                all_bool &= bools;
                match &inner {
                    Some(prev) if *prev != shape => {
                        return Err(format!(
                            "ragged array: rows of shape {prev:?} and {shape:?}; give a tensor object with an explicit shape instead"
                        ));
                    }
                    Some(_) => {}
                    None => inner = Some(shape),
                }
            }
            let mut shape = vec![items.len() as i64];
            shape.extend(inner.unwrap_or_default());
            Ok((shape, all_bool && !items.is_empty()))
        }
        Value::Bool(_) => Ok((vec![], true)),
        Value::Number(_) | Value::String(_) => Ok((vec![], false)),
        Value::Null | Value::Object(_) => Err(format!(
            "{value} is not a tensor element (a number, a boolean, or \"NaN\"/\"Infinity\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferq_shared::model::TensorSpec;
    use serde_json::json;

    fn load(source: &str) -> Result<Input, CliError> {
        Input::load(&format!("x={source}").parse().unwrap())
    }

    fn wire_json(input: &Input) -> Value {
        serde_json::to_value(input.wire()).unwrap()
    }

    #[test]
    fn bare_arrays_get_their_shape_from_nesting_and_fp32() {
        let mut input = load("[[1, 2.5], [3, 4]]").unwrap();
        assert!(input.needs_model());
        input.resolve(None);
        assert_eq!(
            wire_json(&input),
            json!({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [3, 4]]})
        );
        let mut scalar = load("16000").unwrap();
        scalar.resolve(None);
        assert_eq!(
            wire_json(&scalar),
            json!({"name": "x", "shape": [], "datatype": "FP32", "data": [16000]})
        );
        let mut flags = load("[true, false]").unwrap();
        flags.resolve(None);
        assert_eq!(wire_json(&flags)["datatype"], "BOOL");
    }

    #[test]
    fn the_models_declared_datatype_wins_for_bare_values() {
        let model = ModelInfo {
            name: "m".into(),
            description: None,
            inputs: vec![TensorSpec {
                name: "x".into(),
                datatype: DataType::Int64,
                shape: vec![],
            }],
            outputs: vec![],
            batching: false,
            max_batch_size: 1,
            sha256: None,
        };
        let mut input = load("16000").unwrap();
        input.resolve(Some(&model));
        assert_eq!(wire_json(&input)["datatype"], "INT64");
    }

    #[test]
    fn tensor_objects_pass_through_and_fill_in_the_shape() {
        let mut input = load(r#"{"shape": [1, 2], "datatype": "INT32", "data": [1, 2]}"#).unwrap();
        assert!(!input.needs_model());
        input.resolve(None);
        assert_eq!(
            wire_json(&input),
            json!({"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [1, 2]})
        );
        let input = load(r#"{"data": [[1], [2]], "datatype": "FP64"}"#).unwrap();
        assert_eq!(wire_json(&input)["shape"], json!([2, 1]));
    }

    #[test]
    fn bad_sources_are_usage_errors() {
        for (source, want) in [
            ("[[1, 2], [3]]", "ragged"),
            ("[1, null]", "not a tensor element"),
            ("{\"shape\": [1]}", "tensor object"),
            ("{\"data\": [1], \"dtype\": \"FP32\"}", "tensor object"),
            ("[1, 2", "not valid"),
            ("/no/such/file.npy", "neither a file"),
        ] {
            match load(source) {
                Err(CliError::Usage(msg)) => assert!(msg.contains(want), "{source}: {msg}"),
                other => panic!("{source}: {other:?}"),
            }
        }
        assert!("x".parse::<InputArg>().is_err());
        assert!("=1".parse::<InputArg>().is_err());
        assert!("x=".parse::<InputArg>().is_err());
    }

    #[test]
    fn npy_elements_use_the_shared_encoder() {
        let input = Input {
            name: "x".into(),
            shape: vec![3],
            datatype: Some("FP32".into()),
            data: Data::Typed(TensorData::Fp32(vec![0.1, f32::NAN, 2.0])),
            all_bool: false,
        };
        assert_eq!(
            serde_json::to_string(&input.wire()).unwrap(),
            r#"{"name":"x","shape":[3],"datatype":"FP32","data":[0.1,"NaN",2.0]}"#
        );
    }
}
