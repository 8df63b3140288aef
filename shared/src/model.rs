//! What a worker publishes about each model it serves, and the check of a job request against it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::datatype::DataType;
use crate::job::{ErrorCode, JobRequest};

/// One input or output of a model; `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TensorSpec {
    pub name: String,
    #[schema(schema_with = datatype_schema)]
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// The OpenAPI schema of a datatype: its name, one of [`DataType::ALL`]. Built from the
/// datatype table at run time, so the document lists exactly the datatypes the code has.
pub fn datatype_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(DataType::ALL.iter().map(|d| d.as_str())))
        .description(Some(
            "Element type, as the Open Inference Protocol spells it",
        ))
        .build()
}

/// A model as the API sees it: read from the ONNX file by a worker and published to Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Whether workers batch this model's jobs together (every input and output has a dynamic
    /// leading dimension, and `model.toml` did not turn it off).
    pub batching: bool,
    pub max_batch_size: usize,
    /// SHA-256 of the model file (hex): the result cache keys on it, so a changed file never
    /// answers with the old file's results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Model names become part of Redis keys, so they are kept to a safe alphabet.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Why a well-formed request does not fit its model. Each variant is one stable error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("input '{0}' is missing")]
    MissingInput(String),
    #[error("input '{name}' is not an input of the model (inputs: {expected})")]
    UnknownInput { name: String, expected: String },
    #[error("input '{0}' is given more than once")]
    DuplicateInput(String),
    #[error("input '{name}': datatype {got} is not supported (use one of: {supported})")]
    UnsupportedDatatype {
        name: String,
        got: String,
        supported: String,
    },
    #[error("input '{name}': datatype is {got}, the model expects {expected}")]
    DatatypeMismatch {
        name: String,
        got: String,
        expected: DataType,
    },
    #[error(
        "input '{name}': shape {got:?} does not fit the model's shape {expected:?} (-1 = any size)"
    )]
    ShapeMismatch {
        name: String,
        got: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("input '{name}': shape {shape:?} has a negative or too large dimension")]
    InvalidShape { name: String, shape: Vec<i64> },
    #[error("input '{name}': data holds {got} values, shape {shape:?} needs {expected}")]
    DataLength {
        name: String,
        got: usize,
        expected: usize,
        shape: Vec<i64>,
    },
    #[error("input '{name}': {message}")]
    InvalidData { name: String, message: String },
    #[error("output '{name}' is not an output of the model (outputs: {expected})")]
    UnknownOutput { name: String, expected: String },
    #[error("input '{name}': {message}")]
    InvalidUrl { name: String, message: String },
    #[error("input '{name}': {message}")]
    UrlNotAllowed { name: String, message: String },
}

impl ValidationError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MissingInput(_) => ErrorCode::MissingInput,
            Self::UnknownInput { .. } => ErrorCode::UnknownInput,
            Self::DuplicateInput(_) => ErrorCode::DuplicateInput,
            Self::UnsupportedDatatype { .. } => ErrorCode::UnsupportedDatatype,
            Self::DatatypeMismatch { .. } => ErrorCode::DatatypeMismatch,
            Self::ShapeMismatch { .. } => ErrorCode::ShapeMismatch,
            Self::InvalidShape { .. } => ErrorCode::InvalidShape,
            Self::DataLength { .. } => ErrorCode::DataLengthMismatch,
            Self::InvalidData { .. } => ErrorCode::InvalidData,
            Self::UnknownOutput { .. } => ErrorCode::UnknownOutput,
            Self::InvalidUrl { .. } => ErrorCode::InvalidUrl,
            Self::UrlNotAllowed { .. } => ErrorCode::UrlNotAllowed,
        }
    }
}

/// Elements a shape holds, or `None` for a negative dimension or an overflowing product.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Whether a tensor's shape fits a model's declared shape (`-1` = any size).
pub(crate) fn shape_fits(got: &[i64], want: &[i64]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(&g, &w)| w < 0 || g == w)
}

pub(crate) fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ModelInfo {
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// Checks a request's structure against the model: every input present once, known, of
    /// the right datatype and a compatible shape, and every requested output known. The data
    /// arrays are read (and their lengths checked) by whoever converts them next.
    pub fn validate_structure(&self, req: &JobRequest<'_>) -> Result<(), ValidationError> {
        let inputs: Vec<InputView<'_>> = req
            .inputs
            .iter()
            .map(|t| InputView {
                name: &t.name,
                datatype: &t.datatype,
                shape: &t.shape,
            })
            .collect();
        self.check_structure(
            &inputs,
            req.outputs.iter().flatten().map(|o| o.name.as_str()),
        )
    }

    /// The error for `got` values where `shape` needs another count, if they differ.
    pub fn data_length(name: &str, shape: &[i64], got: usize) -> Result<(), ValidationError> {
        match element_count(shape) {
            Some(expected) if expected == got => Ok(()),
            expected => Err(ValidationError::DataLength {
                name: name.to_owned(),
                got,
                expected: expected.unwrap_or(0),
                shape: shape.to_vec(),
            }),
        }
    }

    /// The structural checks, whatever form the request came in (JSON or a binary header).
    pub(crate) fn check_structure<'a>(
        &self,
        inputs: &[InputView<'_>],
        outputs: impl Iterator<Item = &'a str>,
    ) -> Result<(), ValidationError> {
        for (i, t) in inputs.iter().enumerate() {
            let spec = self
                .input(t.name)
                .ok_or_else(|| ValidationError::UnknownInput {
                    name: t.name.to_owned(),
                    expected: names(&self.inputs),
                })?;
            if inputs[..i].iter().any(|o| o.name == t.name) {
                return Err(ValidationError::DuplicateInput(t.name.to_owned()));
            }
            let datatype = DataType::parse(t.datatype).ok_or_else(|| {
                ValidationError::UnsupportedDatatype {
                    name: t.name.to_owned(),
                    got: t.datatype.to_owned(),
                    supported: DataType::ALL
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            if datatype != spec.datatype {
                return Err(ValidationError::DatatypeMismatch {
                    name: t.name.to_owned(),
                    got: t.datatype.to_owned(),
                    expected: spec.datatype,
                });
            }
            if element_count(t.shape).is_none() {
                return Err(ValidationError::InvalidShape {
                    name: t.name.to_owned(),
                    shape: t.shape.to_vec(),
                });
            }
            if !shape_fits(t.shape, &spec.shape) {
                return Err(ValidationError::ShapeMismatch {
                    name: t.name.to_owned(),
                    got: t.shape.to_vec(),
                    expected: spec.shape.clone(),
                });
            }
        }
        if let Some(missing) = self
            .inputs
            .iter()
            .find(|s| !inputs.iter().any(|t| t.name == s.name))
        {
            return Err(ValidationError::MissingInput(missing.name.clone()));
        }
        for o in outputs {
            if !self.outputs.iter().any(|s| s.name == o) {
                return Err(ValidationError::UnknownOutput {
                    name: o.to_owned(),
                    expected: names(&self.outputs),
                });
            }
        }
        Ok(())
    }
}

/// One input as the structural checks see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputView<'a> {
    pub(crate) name: &'a str,
    pub(crate) datatype: &'a str,
    pub(crate) shape: &'a [i64],
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    name: "sr".into(),
                    datatype: DataType::Int64,
                    shape: vec![],
                },
            ],
            outputs: vec![TensorSpec {
                name: "y".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 1],
            }],
            batching: false,
            max_batch_size: 1,
            sha256: None,
        }
    }

    fn check(body: &str) -> Result<(), &'static str> {
        let req: JobRequest<'_> = serde_json::from_str(body).unwrap();
        model()
            .encode_request(&req, &crate::egress::Allow::default())
            .map(drop)
            .map_err(|e| e.code().as_str())
    }

    const SR: &str = r#"{"name":"sr","shape":[],"datatype":"INT64","data":[16000]}"#;

    #[test]
    fn accepts_matching_inputs_including_scalars() {
        let body = format!(
            r#"{{"model":"m","inputs":[{{"name":"x","shape":[3,2],"datatype":"FP32","data":[1,2,3,4,5,6]}},{SR}]}}"#
        );
        assert_eq!(check(&body), Ok(()));
    }

    #[test]
    fn each_mismatch_has_its_code() {
        let x = |shape: &str, dt: &str, data: &str| {
            format!(
                r#"{{"model":"m","inputs":[{{"name":"x","shape":{shape},"datatype":"{dt}","data":{data}}},{SR}]}}"#
            )
        };
        assert_eq!(
            check(&x("[1,2]", "FP64", "[1,2]")),
            Err("datatype_mismatch")
        );
        assert_eq!(
            check(&x("[1,2]", "FP8", "[1,2]")),
            Err("unsupported_datatype")
        );
        assert_eq!(check(&x("[1,3]", "FP32", "[1,2,3]")), Err("shape_mismatch"));
        assert_eq!(check(&x("[2]", "FP32", "[1,2]")), Err("shape_mismatch"));
        assert_eq!(check(&x("[-1,2]", "FP32", "[1,2]")), Err("invalid_shape"));
        assert_eq!(
            check(&x("[2,2]", "FP32", "[1,2,3]")),
            Err("data_length_mismatch")
        );
        assert_eq!(
            check(&x("[1,2]", "FP32", r#"[1,"a"]"#)),
            Err("invalid_data")
        );
        assert_eq!(
            check(
                r#"{"model":"m","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#
            ),
            Err("missing_input")
        );
        let extra = format!(
            r#"{{"model":"m","inputs":[{SR},{{"name":"z","shape":[],"datatype":"FP32","data":[1]}}]}}"#
        );
        assert_eq!(check(&extra), Err("unknown_input"));
        let twice = format!(r#"{{"model":"m","inputs":[{SR},{SR}]}}"#);
        assert_eq!(check(&twice), Err("duplicate_input"));
    }

    #[test]
    fn model_names_are_restricted() {
        assert!(valid_model_name("silero_vad-v6.2"));
        assert!(!valid_model_name("a:b"));
        assert!(!valid_model_name("{x}"));
        assert!(!valid_model_name(""));
    }
}
