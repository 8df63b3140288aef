//! ONNX Runtime itself: loading the shared library once per process and opening sessions.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::{Session, builder::GraphOptimizationLevel};

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
