//! `inferq-worker`'s configuration: every flag also reads an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use inferq_shared::config::{LogConfig, RedisConfig};

use crate::webhooks::WebhookConfig;

/// `inferq-worker` configuration; every flag also reads an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "inferq-worker", version, about = "inferq inference worker")]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub log: LogConfig,

    /// Directory of models, one `<name>/model.onnx` (plus optional `model.toml`) each.
    #[arg(long, env = "INFERQ_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,

    /// Serve only these models (comma-separated names); default: every model in the directory.
    #[arg(long, env = "INFERQ_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,

    /// Inference threads, each with its own ONNX Runtime session per model; default: one per
    /// CPU core.
    #[arg(long, env = "INFERQ_THREADS")]
    pub threads: Option<usize>,

    /// ONNX Runtime intra-op threads per session. One per inference thread is fastest when
    /// inference threads already cover the cores.
    #[arg(long, env = "INFERQ_INTRA_OP_THREADS", default_value_t = 1)]
    pub intra_op_threads: usize,

    /// Path of the ONNX Runtime shared library (`libonnxruntime.so.1.31.1`).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: PathBuf,

    /// Most rows in one batched run, for models whose `model.toml` does not set
    /// `max_batch_size`.
    #[arg(long, env = "INFERQ_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,

    /// Longest wait for more jobs to fill a batch, in milliseconds, for models whose
    /// `model.toml` does not set `max_batch_delay_ms`. 0 batches only what is already queued.
    #[arg(long, env = "INFERQ_MAX_BATCH_DELAY_MS", default_value_t = 0)]
    pub max_batch_delay_ms: u64,

    /// Lease on a running job, in milliseconds: a job whose worker has not renewed its lease for
    /// this long (the worker died) is taken over by another worker.
    #[arg(long, env = "INFERQ_LEASE_MS", default_value_t = 5000)]
    pub lease_ms: u64,

    /// Priority aging, in seconds: among a model's waiting jobs, one counts one priority level
    /// higher for every this many seconds it has waited, so lower priorities are delayed by a
    /// flow of higher ones but never starved. 0 = strict priority.
    #[arg(long, env = "INFERQ_PRIORITY_AGING_SECS", default_value_t = 30)]
    pub priority_aging_secs: u64,

    /// Attempts a job gets before it fails with `max_attempts_exceeded` and moves to the
    /// dead-letter stream.
    #[arg(long, env = "INFERQ_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,

    /// On shutdown, seconds to finish the jobs already started before handing the rest back.
    #[arg(long, env = "INFERQ_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Speech pipeline: recordings one worker processes at once (their windows share ONNX
    /// Runtime calls).
    #[arg(long, env = "INFERQ_SPEECH_CONCURRENCY", default_value_t = 16)]
    pub speech_concurrency: usize,

    /// Speech pipeline: threads running the model over recordings, each with its own session;
    /// default: one per CPU core.
    #[arg(long, env = "INFERQ_SPEECH_THREADS")]
    pub speech_threads: Option<usize>,

    /// Speech pipeline: most recordings whose next window runs in one ONNX Runtime call.
    #[arg(long, env = "INFERQ_SPEECH_MAX_BATCH", default_value_t = 32)]
    pub speech_max_batch: usize,

    /// Text embeddings pipeline: jobs one worker runs at once (their texts share ONNX Runtime
    /// calls).
    #[arg(long, env = "INFERQ_EMBEDDING_CONCURRENCY", default_value_t = 16)]
    pub embedding_concurrency: usize,

    /// Text embeddings pipeline: threads tokenizing texts and running the model, each with its
    /// own session; default: one per CPU core.
    #[arg(long, env = "INFERQ_EMBEDDING_THREADS")]
    pub embedding_threads: Option<usize>,

    /// Text embeddings pipeline: most tokens in one ONNX Runtime call, counted as texts ×
    /// the longest text's tokens (padding included); at least 256. Small runs are fastest on
    /// CPU: their activations stay in cache (docs/benchmarks.md).
    #[arg(long, env = "INFERQ_EMBEDDING_TOKEN_BUDGET", default_value_t = 512)]
    pub embedding_token_budget: usize,

    /// Name of this worker in the consumer group; default: `<hostname>-<pid>-<random>`.
    #[arg(long, env = "INFERQ_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Address to serve Prometheus metrics on (`GET /metrics`), e.g. `0.0.0.0:9464`; unset:
    /// no endpoint (several workers may share a host).
    #[arg(long, env = "INFERQ_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,

    /// Largest input fetched by URL, in bytes; a larger one fails its job
    /// (`input_fetch_failed`).
    #[arg(long, env = "INFERQ_FETCH_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub fetch_max_bytes: u64,

    /// Longest one fetch of an input by URL may take, body included, in seconds.
    #[arg(long, env = "INFERQ_FETCH_TIMEOUT_SECS", default_value_t = 30)]
    pub fetch_timeout_secs: u64,

    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

impl Config {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(100))
    }
}
