//! Model discovery: `<dir>/<name>/model.onnx` plus an optional `model.toml`, read once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use inferq_shared::model::{ModelInfo, TensorSpec};
use ort::session::Session;
use ort::value::ValueType;
use serde::Deserialize;

use super::runtime::{EngineError, open_session};

/// `models/<name>/model.toml`: optional per-model settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelToml {
    /// Shown in `GET /models`.
    pub description: Option<String>,
    /// Force batching across jobs on or off; by default it is on when the ONNX metadata allows.
    pub batching: Option<bool>,
    /// Most rows one batched run may hold.
    pub max_batch_size: Option<usize>,
    /// Longest wait for more jobs to fill a batch, in milliseconds.
    pub max_batch_delay_ms: Option<u64>,
}

/// A model found on disk, with its settings resolved.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub path: PathBuf,
    pub info: Arc<ModelInfo>,
    pub max_batch_delay: Duration,
}

/// Batching defaults for models whose `model.toml` says nothing.
#[derive(Debug, Clone, Copy)]
pub struct BatchDefaults {
    pub max_batch_size: usize,
    pub max_batch_delay: Duration,
}

/// Finds `<dir>/<name>/model.onnx` models (all, or those in `only`), reads each one's
/// metadata with a throwaway session, and resolves its batching settings.
pub fn discover(
    dir: &Path,
    only: &[String],
    defaults: BatchDefaults,
) -> Result<Vec<ModelSpec>, EngineError> {
    let io = |source| EngineError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| only.is_empty() || only.contains(n))
        .collect();
    names.sort();
    for wanted in only {
        if !names.contains(wanted) {
            return Err(EngineError::Model {
                path: dir.join(wanted).join("model.onnx"),
                message: "model requested in the configuration but not found".into(),
            });
        }
    }
    names
        .into_iter()
        .map(|name| load(dir, name, defaults))
        .collect()
}

fn load(dir: &Path, name: String, defaults: BatchDefaults) -> Result<ModelSpec, EngineError> {
    let model_dir = dir.join(&name);
    if !inferq_shared::model::valid_model_name(&name) {
        return Err(EngineError::Model {
            path: model_dir,
            message: "model directory names may only use letters, digits, '_', '-' and '.'".into(),
        });
    }
    let toml_path = model_dir.join("model.toml");
    let settings: ModelToml = match std::fs::read_to_string(&toml_path) {
        Ok(text) => toml::from_str(&text).map_err(|e| EngineError::Model {
            path: toml_path.clone(),
            message: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ModelToml::default(),
        Err(source) => {
            return Err(EngineError::Io {
                path: toml_path,
                source,
            });
        }
    };
    let path = model_dir.join("model.onnx");
    let session = open_session(&path, 1)?;
    let info = describe(&name, &session, &settings, defaults, &path)?;
    Ok(ModelSpec {
        path,
        info: Arc::new(info),
        max_batch_delay: settings
            .max_batch_delay_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.max_batch_delay),
    })
}

fn spec(name: &str, ty: &ValueType, path: &Path) -> Result<TensorSpec, EngineError> {
    let unsupported = || EngineError::Model {
        path: path.to_owned(),
        message: format!("'{name}' is not a tensor of a supported element type ({ty:?})"),
    };
    match ty {
        ValueType::Tensor {
            ty: elem, shape, ..
        } => Ok(TensorSpec {
            name: name.to_owned(),
            datatype: super::codec::datatype(*elem).ok_or_else(unsupported)?,
            shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
        }),
        _ => Err(unsupported()),
    }
}

/// Builds the published metadata: names, datatypes and shapes from the ONNX graph, and whether
/// jobs can be batched (every input and output has a dynamic leading dimension).
fn describe(
    name: &str,
    session: &Session,
    settings: &ModelToml,
    defaults: BatchDefaults,
    path: &Path,
) -> Result<ModelInfo, EngineError> {
    let inputs = session
        .inputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype(), path))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = session
        .outputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype(), path))
        .collect::<Result<Vec<_>, _>>()?;
    let batchable = inputs
        .iter()
        .chain(&outputs)
        .all(|s| s.shape.first() == Some(&-1));
    let batching = match settings.batching {
        Some(true) if !batchable => {
            return Err(EngineError::Model {
                path: path.to_owned(),
                message: "model.toml turns batching on, but not every input and output has a dynamic leading (batch) dimension".into(),
            });
        }
        Some(b) => b,
        None => batchable,
    };
    let max_batch_size = if batching {
        settings
            .max_batch_size
            .unwrap_or(defaults.max_batch_size)
            .max(1)
    } else {
        1
    };
    Ok(ModelInfo {
        name: name.to_owned(),
        description: settings.description.clone(),
        inputs,
        outputs,
        batching,
        max_batch_size,
        sha256: Some(file_sha256(path)?),
    })
}

/// The SHA-256 of the model file, read in blocks.
fn file_sha256(path: &Path) -> Result<String, EngineError> {
    use sha2::Digest;
    use std::io::Read;
    let fail = |e: std::io::Error| EngineError::Model {
        path: path.to_owned(),
        message: format!("reading the file: {e}"),
    };
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use inferq_shared::DataType;

    #[test]
    fn batching_follows_the_onnx_metadata_and_model_toml() {
        let models = crate::infer::test_models();
        let get = |n: &str| {
            models
                .iter()
                .find(|m| m.info.name == n)
                .unwrap()
                .info
                .clone()
        };
        assert!(get("linear").batching && get("linear").max_batch_size == 8);
        assert!(get("mlp_small").batching);
        assert!(!get("dtypes").batching, "a scalar input has no batch axis");
        assert!(!get("slow").batching, "model.toml turns it off");
        assert_eq!(get("slow").max_batch_size, 1);
        assert_eq!(get("linear").inputs[0].shape, vec![-1, 4]);
        assert!(get("half").batching && get("strings").batching);
        assert_eq!(get("half").outputs[0].datatype, DataType::Fp16);
        assert_eq!(get("strings").inputs[0].datatype, DataType::Bytes);
        assert_eq!(get("strings").outputs[0].shape, vec![-1]);
    }
}
