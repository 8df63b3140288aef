//! ONNX Runtime: loading models, reading their metadata, and running one batch of jobs on a
//! session this thread owns. Everything here runs on dedicated inference threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use inferq_shared::job::{JobError, JobRequest};
use inferq_shared::model::{ModelInfo, TensorSpec, element_count};
use inferq_shared::queue::Outcome;
use inferq_shared::tensor::{DataRef, DataType, OutputTensor, TensorData};
use inferq_shared::with_tensor_data;
use ort::environment::Environment;
use ort::session::{Session, SessionInputValue, builder::GraphOptimizationLevel};
use ort::value::{TensorElementType, Value, ValueType};
use serde::Deserialize;

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

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load ONNX Runtime from {path}: {source}")]
    Library {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("model {path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads the ONNX Runtime shared library once per process. A missing or wrong library is a
/// clear error here rather than a panic at the first session.
pub fn init_runtime(library: &Path) -> Result<(), EngineError> {
    let result = ENVIRONMENT.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("inferq")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(EngineError::Library {
            path: library.to_owned(),
            source: e.clone().into(),
        }),
    }
}

fn environment() -> Result<&'static Environment, String> {
    match ENVIRONMENT.get() {
        Some(Ok(env)) => Ok(env),
        Some(Err(e)) => Err(e.clone()),
        None => Err("ONNX Runtime is not initialized (call init_runtime first)".into()),
    }
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
        .map(|name| {
            let model_dir = dir.join(&name);
            if !inferq_shared::model::valid_model_name(&name) {
                return Err(EngineError::Model {
                    path: model_dir,
                    message: "model directory names may only use letters, digits, '_', '-' and '.'"
                        .into(),
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
        })
        .collect()
}

/// Opens a session with `intra_threads` intra-op threads (one is fastest when each core has
/// its own inference thread) and no spinning, so idle threads do not burn CPU.
pub fn open_session(path: &Path, intra_threads: usize) -> Result<Session, EngineError> {
    let err = |e: &dyn std::fmt::Display| EngineError::Model {
        path: path.to_owned(),
        message: e.to_string(),
    };
    Session::builder(environment().map_err(|e| err(&e))?)
        .map_err(|e| err(&e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| err(&e))?
        .with_intra_threads(intra_threads)
        .map_err(|e| err(&e))?
        .with_inter_threads(1)
        .map_err(|e| err(&e))?
        .with_intra_op_spinning(false)
        .map_err(|e| err(&e))?
        .commit_from_file(path)
        .map_err(|e| err(&e))
}

fn datatype(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        _ => return None,
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
            datatype: datatype(*elem).ok_or_else(unsupported)?,
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
    })
}

/// A job decoded for inference: its inputs in the model's input order.
struct Decoded {
    inputs: Vec<(Vec<i64>, TensorData)>,
    outputs: Option<Vec<String>>,
}

fn permanent(code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Failed(JobError {
        code: code.to_owned(),
        message: message.into(),
    })
}

/// Whether `INFERQ_TEST_HOOKS=1` enabled the crash hook of [`JobParameters`]; tests use it to
/// stand in for a job that kills its worker (a native crash, the OOM killer).
///
/// [`JobParameters`]: inferq_shared::job::JobParameters
fn test_hooks() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("INFERQ_TEST_HOOKS").is_ok_and(|v| v == "1"))
}

fn decode(info: &ModelInfo, payload: &[u8]) -> Result<Decoded, Outcome> {
    let req: JobRequest<'_> = serde_json::from_slice(payload).map_err(|e| {
        permanent(
            "invalid_request",
            format!("job payload is not a valid request: {e}"),
        )
    })?;
    if test_hooks() && req.parameters.as_ref().is_some_and(|p| p.test_abort_worker) {
        tracing::error!("test hook: aborting the worker process");
        std::process::abort();
    }
    // The API validated against the metadata it had; the model may have changed since.
    // Data arrays are read once, below, straight into typed buffers.
    info.validate_structure(&req)
        .map_err(|e| permanent(e.code(), e.to_string()))?;
    let mut inputs = Vec::with_capacity(info.inputs.len());
    for spec in &info.inputs {
        let t = req
            .inputs
            .iter()
            .find(|t| t.name == spec.name)
            .ok_or_else(|| {
                permanent("missing_input", format!("input '{}' is missing", spec.name))
            })?;
        let n = element_count(&t.shape).unwrap_or(0);
        let data = TensorData::parse(spec.datatype, t.data, n)
            .map_err(|e| permanent("invalid_data", format!("input '{}': {e}", spec.name)))?;
        ModelInfo::data_length(&spec.name, &t.shape, data.len())
            .map_err(|e| permanent(e.code(), e.to_string()))?;
        inputs.push((t.shape.clone(), data));
    }
    Ok(Decoded {
        inputs,
        outputs: req.outputs.map(|o| o.into_iter().map(|o| o.name).collect()),
    })
}

/// The rows (leading dimension) a job contributes to a batch, if it can join one: every input
/// must agree on it.
fn rows(d: &Decoded) -> Option<i64> {
    let first = *d.inputs.first()?.0.first()?;
    d.inputs
        .iter()
        .all(|(shape, _)| shape.first() == Some(&first))
        .then_some(first)
}

/// Each input's shape without its leading (batch) dimension: jobs batch together when these match.
type TrailingShapes = Vec<Vec<i64>>;

/// One session per model, owned by one inference thread.
pub struct Runner {
    sessions: HashMap<String, (Session, Arc<ModelInfo>)>,
}

impl Runner {
    pub fn new(models: &[ModelSpec], intra_threads: usize) -> Result<Self, EngineError> {
        let sessions = models
            .iter()
            .map(|m| {
                Ok((
                    m.info.name.clone(),
                    (open_session(&m.path, intra_threads)?, m.info.clone()),
                ))
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Self { sessions })
    }

    /// Runs the jobs of one model and returns one outcome per payload, in order. Compatible
    /// jobs share a session run when the model batches; a run that fails is retried job by job
    /// so one bad input never fails its batch-mates.
    pub fn run(&mut self, model: &str, payloads: &[&[u8]]) -> Vec<Outcome> {
        let Some((session, info)) = self.sessions.get_mut(model) else {
            return payloads
                .iter()
                .map(|_| {
                    permanent(
                        "unknown_model",
                        format!("this worker does not serve model '{model}'"),
                    )
                })
                .collect();
        };
        let info = info.clone();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; payloads.len()];
        let mut decoded: Vec<(usize, Decoded)> = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            match decode(&info, p) {
                Ok(d) => decoded.push((i, d)),
                Err(o) => outcomes[i] = Some(o),
            }
        }

        if info.batching {
            // Group by everything but the leading dimension: same trailing shapes per input.
            let mut groups: Vec<(TrailingShapes, Vec<(usize, Decoded)>)> = Vec::new();
            let mut alone = Vec::new();
            for (i, d) in decoded {
                if rows(&d).is_none_or(|r| r as usize > info.max_batch_size) {
                    alone.push((i, d));
                    continue;
                }
                let key: TrailingShapes = d.inputs.iter().map(|(s, _)| s[1..].to_vec()).collect();
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push((i, d)),
                    None => groups.push((key, vec![(i, d)])),
                }
            }
            for (_, members) in groups {
                let mut chunk: Vec<(usize, Decoded)> = Vec::new();
                let mut chunk_rows = 0;
                for (i, d) in members {
                    let r = rows(&d).unwrap_or(1) as usize;
                    if chunk_rows + r > info.max_batch_size && !chunk.is_empty() {
                        run_batch(session, &info, std::mem::take(&mut chunk), &mut outcomes);
                        chunk_rows = 0;
                    }
                    chunk_rows += r;
                    chunk.push((i, d));
                }
                if !chunk.is_empty() {
                    run_batch(session, &info, chunk, &mut outcomes);
                }
            }
            for (i, d) in alone {
                outcomes[i] = Some(run_one(session, &info, d));
            }
        } else {
            for (i, d) in decoded {
                outcomes[i] = Some(run_one(session, &info, d));
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| permanent("internal", "no outcome was produced")))
            .collect()
    }
}

fn to_value(shape: Vec<i64>, data: TensorData) -> ort::Result<SessionInputValue<'static>> {
    Ok(with_tensor_data!(data, v => Value::from_array((shape, v))?.into_dyn().into()))
}

fn run_one(session: &mut Session, info: &ModelInfo, job: Decoded) -> Outcome {
    let wanted = job.outputs.clone();
    let inputs: Result<Vec<_>, _> = info
        .inputs
        .iter()
        .zip(job.inputs)
        .map(|(spec, (shape, data))| to_value(shape, data).map(|v| (spec.name.clone(), v)))
        .collect();
    let result = inputs.and_then(|inputs| {
        let outputs = session.run(inputs)?;
        Ok(encode(info, &outputs, wanted.as_deref(), None))
    });
    match result {
        Ok(Ok(json)) => Outcome::Succeeded(json),
        Ok(Err(o)) => o,
        Err(e) => permanent(
            "inference_error",
            format!("the model rejected the input: {e}"),
        ),
    }
}

/// Concatenates jobs along the leading dimension, runs once and splits the outputs back.
fn run_batch(
    session: &mut Session,
    info: &ModelInfo,
    jobs: Vec<(usize, Decoded)>,
    outcomes: &mut [Option<Outcome>],
) {
    if jobs.len() == 1 {
        let (i, d) = jobs.into_iter().next().expect("one job");
        outcomes[i] = Some(run_one(session, info, d));
        return;
    }
    let row_counts: Vec<usize> = jobs
        .iter()
        .map(|(_, d)| rows(d).unwrap_or(1) as usize)
        .collect();
    let total: usize = row_counts.iter().sum();
    let mut merged: Vec<(Vec<i64>, TensorData)> = Vec::with_capacity(info.inputs.len());
    for k in 0..info.inputs.len() {
        let (first_shape, first_data) = &jobs[0].1.inputs[k];
        let mut shape = first_shape.clone();
        shape[0] = total as i64;
        let mut data = first_data.clone();
        for (_, d) in &jobs[1..] {
            data.extend_from(&d.inputs[k].1);
        }
        merged.push((shape, data));
    }
    let inputs: Result<Vec<_>, _> = info
        .inputs
        .iter()
        .zip(merged)
        .map(|(spec, (shape, data))| to_value(shape, data).map(|v| (spec.name.clone(), v)))
        .collect();
    let batched = match inputs.and_then(|inputs| session.run(inputs)) {
        Ok(outputs) => {
            let fits = outputs.iter().all(|(_, v)| {
                matches!(v.dtype(), ValueType::Tensor { shape, .. } if shape.first() == Some(&(total as i64)))
            });
            if fits {
                let mut offset = 0;
                for ((i, d), r) in jobs.iter().zip(&row_counts) {
                    let o = match encode(
                        info,
                        &outputs,
                        d.outputs.as_deref(),
                        Some((offset, *r, total)),
                    ) {
                        Ok(json) => Outcome::Succeeded(json),
                        Err(o) => o,
                    };
                    outcomes[*i] = Some(o);
                    offset += r;
                }
            }
            fits
        }
        Err(e) => {
            tracing::debug!(error = %e, jobs = jobs.len(), "batched run failed; running jobs one by one");
            false
        }
    };
    if batched {
        return;
    }
    for (i, d) in jobs {
        outcomes[i] = Some(run_one(session, info, d));
    }
}

/// Serializes `{"outputs": [...]}` straight from ONNX Runtime's buffers. With `rows`
/// (`offset`, `count`, `total`), only that slice of the leading dimension is written.
fn encode(
    info: &ModelInfo,
    outputs: &ort::session::SessionOutputs<'_>,
    wanted: Option<&[String]>,
    rows: Option<(usize, usize, usize)>,
) -> Result<String, Outcome> {
    let names: Vec<&str> = match wanted {
        Some(w) => w.iter().map(String::as_str).collect(),
        None => info.outputs.iter().map(|o| o.name.as_str()).collect(),
    };
    let mut tensors = Vec::with_capacity(names.len());
    let mut shapes = Vec::with_capacity(names.len());
    for name in &names {
        let Some(value) = outputs.get(name) else {
            return Err(permanent(
                "inference_error",
                format!("the model produced no output '{name}'"),
            ));
        };
        let ValueType::Tensor { shape, .. } = value.dtype() else {
            return Err(permanent(
                "unsupported_output",
                format!("output '{name}' is not a tensor"),
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
        shapes.push(shape);
        macro_rules! slice {
            ($t:ty, $variant:ident) => {
                value
                    .try_extract_tensor::<$t>()
                    .map(|(_, d)| DataRef::$variant(&d[range.clone()]))
            };
        }
        let data = match value.dtype() {
            ValueType::Tensor { ty, .. } => match ty {
                TensorElementType::Bool => slice!(bool, Bool),
                TensorElementType::Uint8 => slice!(u8, Uint8),
                TensorElementType::Uint16 => slice!(u16, Uint16),
                TensorElementType::Uint32 => slice!(u32, Uint32),
                TensorElementType::Uint64 => slice!(u64, Uint64),
                TensorElementType::Int8 => slice!(i8, Int8),
                TensorElementType::Int16 => slice!(i16, Int16),
                TensorElementType::Int32 => slice!(i32, Int32),
                TensorElementType::Int64 => slice!(i64, Int64),
                TensorElementType::Float32 => slice!(f32, Fp32),
                TensorElementType::Float64 => slice!(f64, Fp64),
                other => {
                    return Err(permanent(
                        "unsupported_output",
                        format!("output '{name}' has unsupported element type {other:?}"),
                    ));
                }
            },
            _ => unreachable!("checked above"),
        };
        let data = data
            .map_err(|e| permanent("inference_error", format!("reading output '{name}': {e}")))?;
        tensors.push((name, data));
    }
    let out: Vec<OutputTensor<'_>> = tensors
        .iter()
        .zip(&shapes)
        .map(|((name, data), shape)| OutputTensor {
            name,
            shape,
            datatype: data.datatype(),
            data: *data,
        })
        .collect();
    #[derive(serde::Serialize)]
    struct Outputs<'a> {
        outputs: Vec<OutputTensor<'a>>,
    }
    serde_json::to_string(&Outputs { outputs: out })
        .map_err(|e| permanent("internal", format!("encoding the result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> Vec<ModelSpec> {
        init_runtime(Path::new(env!("ORT_DYLIB_PATH"))).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models");
        discover(
            &dir,
            &[],
            BatchDefaults {
                max_batch_size: 8,
                max_batch_delay: Duration::ZERO,
            },
        )
        .unwrap()
    }

    #[test]
    fn batching_follows_the_onnx_metadata_and_model_toml() {
        let models = models();
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
    }

    #[test]
    fn a_batch_splits_back_per_job_and_a_bad_job_fails_alone() {
        let models = models();
        let mut runner = Runner::new(&models, 1).unwrap();
        let job = |rows: &str, shape: &str| {
            format!(
                r#"{{"model":"linear","inputs":[{{"name":"x","shape":{shape},"datatype":"FP32","data":{rows}}}]}}"#
            )
        };
        let payloads = [
            job("[1,2,3,4]", "[1,4]"),
            job("[1,2,3]", "[1,3]"),
            job("[[0,0,0,0],[1,0,0,0]]", "[2,4]"),
        ];
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        let out = runner.run("linear", &refs);
        let Outcome::Succeeded(a) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            a,
            r#"{"outputs":[{"name":"y","shape":[1,3],"datatype":"FP32","data":[7.5,7.5,10.0]}]}"#
        );
        assert!(
            matches!(&out[1], Outcome::Failed(e) if e.code == "shape_mismatch"),
            "{out:?}"
        );
        let Outcome::Succeeded(c) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(
            c,
            r#"{"outputs":[{"name":"y","shape":[2,3],"datatype":"FP32","data":[0.5,-0.5,1.0,0.6,-0.3,1.3]}]}"#
        );
    }
}
