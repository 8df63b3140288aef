//! The inference side of a worker: ONNX Runtime, the models, the batches they run and the
//! threads they run on. It knows neither Redis nor tokio: bytes of a job go in, bytes of a
//! result (or a job error) come out.
//!
//! [`runtime`] loads ONNX Runtime and opens sessions, [`models`] finds and describes the models,
//! [`runner`] runs one model's jobs on a session (planned by [`batcher`], read and written by
//! [`codec`]), [`pool`] owns the inference threads.

pub(crate) mod batcher;
pub(crate) mod codec;
pub mod models;
pub(crate) mod pool;
pub mod runner;
pub mod runtime;

use inferq_shared::job::JobError;

/// What running one job gives: its binary result frame, or why it failed.
pub type Ran = Result<Vec<u8>, JobError>;

/// The test models of `tests/models`, with ONNX Runtime loaded.
#[cfg(test)]
pub(crate) fn test_models() -> Vec<models::ModelSpec> {
    use std::path::Path;

    runtime::init_runtime(Path::new(env!("ORT_DYLIB_PATH"))).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models");
    models::discover(
        &dir,
        &[],
        models::BatchDefaults {
            max_batch_size: 8,
            max_batch_delay: std::time::Duration::ZERO,
        },
    )
    .unwrap()
}
