//! The command line of `inferq-bench`.

use std::path::PathBuf;

use clap::Parser;

/// Benchmark inferq: raw ONNX Runtime loop versus the whole system under HTTP load.
///
/// With `--json`, the human-readable report goes to stderr and one JSON summary line to stdout.
#[derive(Parser, Debug, Clone)]
#[command(name = "inferq-bench", version)]
pub(crate) struct Args {
    /// Model to benchmark: a `<models-dir>/<model>/model.onnx` with one FP32 input `[-1, W]`.
    #[arg(long, default_value = "mlp_small")]
    pub(crate) model: String,

    /// Directory holding the model (the large benchmark model lives in `bench-models`).
    #[arg(long, default_value = "tests/models")]
    pub(crate) models_dir: PathBuf,

    /// Input width W; default: read from the model's input shape `[-1, W]`.
    #[arg(long)]
    pub(crate) width: Option<usize>,

    /// Jobs to submit.
    #[arg(short = 'n', long = "jobs", default_value_t = 20_000)]
    pub(crate) jobs: usize,

    /// Concurrent HTTP clients (each keeps one job in flight).
    #[arg(short = 'c', long, default_value_t = 32)]
    pub(crate) concurrency: usize,

    /// Only submit, as fast as the clients can; do not wait for results.
    #[arg(long)]
    pub(crate) submit_only: bool,

    /// With --submit-only: submit through `POST /jobs/batch`, N jobs per request, instead of
    /// one `POST /jobs` per job.
    #[arg(long, value_name = "N", requires = "submit_only", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) bulk: Option<u64>,

    /// Submit with `POST /jobs?wait=30`, which answers with the finished record when the job
    /// ends within the wait (one request per job instead of a submit and a status request).
    #[arg(long, conflicts_with = "submit_only")]
    pub(crate) submit_wait: bool,

    /// Each job is one synchronous Open Inference Protocol request,
    /// `POST /v2/models/<model>/infer`, with its input and its outputs as binary tensors (the
    /// framing the Triton client uses by default).
    #[arg(long, conflicts_with_all = ["submit_only", "submit_wait"])]
    pub(crate) oip_binary: bool,

    /// Worker processes to start (0: none; the benchmark then announces the model itself so
    /// the API accepts jobs).
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,

    /// Inference threads per worker; default: CPU cores / workers (at least 1).
    #[arg(long)]
    pub(crate) threads: Option<usize>,

    /// Largest batch: the workers' `INFERQ_MAX_BATCH_SIZE` and the raw loop's large batch.
    #[arg(long, default_value_t = 32)]
    pub(crate) max_batch: usize,

    /// Workers' `INFERQ_MAX_BATCH_DELAY_MS`: how long a worker waits for more jobs to fill a
    /// batch; default: the worker's own default (0, batch only what is already queued).
    #[arg(long)]
    pub(crate) batch_delay_ms: Option<u64>,

    /// Seconds each raw loop (batch 1, then max batch) runs.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) raw_secs: f64,

    /// Skip the raw ONNX Runtime loops.
    #[arg(long)]
    pub(crate) skip_raw: bool,

    /// Drive an already running API at this URL (`http://host:port`) instead of starting one.
    #[arg(long)]
    pub(crate) target: Option<String>,

    /// ONNX Runtime shared library, for the raw loops and the workers.
    #[arg(
        long,
        env = "ORT_DYLIB_PATH",
        default_value = ".ort/libonnxruntime.so.1.31.1"
    )]
    pub(crate) ort_lib: PathBuf,

    /// Print a one-line JSON summary on stdout (the report goes to stderr).
    #[arg(long)]
    pub(crate) json: bool,

    /// Directory of the `inferq-api` and `inferq-worker` binaries; default: this binary's own.
    #[arg(long)]
    pub(crate) bin_dir: Option<PathBuf>,

    /// The API's async-runtime threads (`TOKIO_WORKER_THREADS`); default: the API's own (one
    /// per core).
    #[arg(long)]
    pub(crate) api_runtime_threads: Option<usize>,

    /// After the run, run the same load once more against the `inferq-api` and `inferq-worker`
    /// binaries in this directory (an older build) and print both builds' CPU per job and
    /// their ratio, measured minutes apart on the same machine.
    #[arg(long)]
    pub(crate) baseline_bin_dir: Option<PathBuf>,

    /// `redis-server` executable to start.
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_server: PathBuf,

    /// Benchmark the speech_segments pipeline instead: this many concurrent copies
    /// (`--speech-jobs`) of this recording (a 16 kHz mono 16-bit WAV, e.g. the 10-minute
    /// tests/audio/bench-10min.wav from `scripts/gen_audio_fixtures.sh --bench`), against a
    /// single-stream Python onnxruntime loop over it.
    #[arg(long)]
    pub(crate) speech: Option<PathBuf>,

    /// Concurrent recordings for `--speech`.
    #[arg(long, default_value_t = 8)]
    pub(crate) speech_jobs: usize,

    /// Benchmark the text_embeddings pipeline instead: this many texts (half short, half
    /// medium) in `--embedding-jobs` jobs through two workers, against a single-thread Python
    /// onnxruntime loop over the same model at batch 1.
    #[arg(long)]
    pub(crate) embeddings: Option<usize>,

    /// Jobs the `--embeddings` corpus is split into.
    #[arg(long, default_value_t = 20)]
    pub(crate) embedding_jobs: usize,

    /// With `--embeddings`: send the corpus through the OpenAI Batch API instead (one
    /// `/v1/embeddings` request per text in a JSONL file: `POST /v1/files`, `POST /v1/batches`,
    /// then `GET /v1/batches/<id>` until it completes), as a client of that API would.
    #[arg(long, requires = "embeddings")]
    pub(crate) batch_api: bool,

    /// Python with numpy and onnxruntime (and tokenizers, for `--embeddings`), for the
    /// `--speech` and `--embeddings` baselines.
    #[arg(long, default_value = ".venv-test/bin/python")]
    pub(crate) python: PathBuf,

    /// Give every job this optional feature (repeat for several), to measure what it costs
    /// (docs/benchmarks.md, "What each feature costs").
    #[arg(long = "feature", value_enum)]
    pub(crate) features: Vec<Feature>,

    /// After the run, drive the same load against an instant server (answers the job API at
    /// once, no Redis, no inference; a child process) and print the load generator's own
    /// ceiling and this run's completed jobs per second as a fraction of it.
    #[arg(long, conflicts_with_all = ["oip_binary", "bulk", "target"])]
    pub(crate) ceiling: bool,

    /// Serve the instant job API on this address until killed (what `--ceiling` starts).
    #[arg(long, hide = true, value_name = "ADDR")]
    pub(crate) instant_server: Option<std::net::SocketAddr>,

    /// Where the system's Redis is: `node` (one redis-server), `replica` (one with a replica,
    /// the API holding each 202 until the replica has the job: `INFERQ_REDIS_WAIT_REPLICAS=1`)
    /// or `cluster` (a Redis Cluster of three masters; the report shows each one's CPU).
    #[arg(long, value_enum, default_value = "node", conflicts_with = "target")]
    pub(crate) redis: crate::topology::Topology,

    /// Seconds after submission an accepted job may take to finish before it counts as lost.
    #[arg(long, default_value_t = 120)]
    pub(crate) job_timeout_secs: u64,
}

/// An optional per-job feature `--feature` turns on for every job.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feature {
    /// An `Idempotency-Key` header (a distinct key per job).
    Idempotency,
    /// `parameters.priority` 7 (not the default lane).
    Priority,
    /// `parameters.timeout_ms` 60000 (a deadline to start by).
    Deadline,
    /// `parameters.cache`: answered from the result cache when the same input ran before (the
    /// load repeats 256 inputs, so nearly every job is a hit).
    Cache,
    /// A tenant quota (`INFERQ_TENANT_MAX_QUEUED` on the API): every job is counted.
    Quota,
    /// A webhook for `succeeded` (delivered to an instant receiver on loopback).
    Webhook,
    /// `parameters.result_ttl_secs` 3600 (a retention of its own).
    Retention,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_parses() {
        Args::command().debug_assert();
        let a =
            Args::try_parse_from(["inferq-bench", "-n", "10", "-c", "2", "--submit-only"]).unwrap();
        assert_eq!((a.jobs, a.concurrency, a.submit_only), (10, 2, true));
    }
}
