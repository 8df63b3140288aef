//! `inferq-bench`: measures the raw ONNX Runtime limit of a model in-process, then the whole
//! inferq system (Redis, API, workers) under concurrent HTTP load, and compares the two.
//!
//! ```text
//! cargo build --release -p inferq-bench -p inferq-api -p inferq-worker
//! target/release/inferq-bench --model mlp_small -n 20000 -c 32
//! ```

mod cluster;
mod load;
mod procfs;
mod raw;
mod report;
mod speech;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use inferq_shared::config::RedisConfig;
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::Queue;
use inferq_worker::infer::{models, runtime as session};

use crate::cluster::{Cluster, ClusterConfig};
use crate::load::LoadConfig;
use crate::raw::RawResult;
use crate::report::{CpuSample, Report};

/// Benchmark inferq: raw ONNX Runtime loop versus the whole system under HTTP load.
///
/// With `--json`, the human-readable report goes to stderr and one JSON summary line to stdout.
#[derive(Parser, Debug, Clone)]
#[command(name = "inferq-bench", version)]
struct Args {
    /// Model to benchmark: a `<models-dir>/<model>/model.onnx` with one FP32 input `[-1, W]`.
    #[arg(long, default_value = "mlp_small")]
    model: String,

    /// Directory holding the model (the large benchmark model lives in `bench-models`).
    #[arg(long, default_value = "tests/models")]
    models_dir: PathBuf,

    /// Input width W; default: read from the model's input shape `[-1, W]`.
    #[arg(long)]
    width: Option<usize>,

    /// Jobs to submit.
    #[arg(short = 'n', long = "jobs", default_value_t = 20_000)]
    jobs: usize,

    /// Concurrent HTTP clients (each keeps one job in flight).
    #[arg(short = 'c', long, default_value_t = 32)]
    concurrency: usize,

    /// Only submit, as fast as the clients can; do not wait for results.
    #[arg(long)]
    submit_only: bool,

    /// With --submit-only: submit through `POST /jobs/batch`, N jobs per request, instead of
    /// one `POST /jobs` per job.
    #[arg(long, value_name = "N", requires = "submit_only", value_parser = clap::value_parser!(u64).range(1..=1000))]
    bulk: Option<u64>,

    /// Submit with `POST /jobs?wait=30`, which answers with the finished record when the job
    /// ends within the wait (one request per job instead of a submit and a status request).
    #[arg(long, conflicts_with = "submit_only")]
    submit_wait: bool,

    /// Each job is one synchronous Open Inference Protocol request,
    /// `POST /v2/models/<model>/infer`, with its input and its outputs as binary tensors (the
    /// framing the Triton client uses by default).
    #[arg(long, conflicts_with_all = ["submit_only", "submit_wait"])]
    oip_binary: bool,

    /// Worker processes to start (0: none; the benchmark then announces the model itself so
    /// the API accepts jobs).
    #[arg(long, default_value_t = 1)]
    workers: usize,

    /// Inference threads per worker; default: CPU cores / workers (at least 1).
    #[arg(long)]
    threads: Option<usize>,

    /// Largest batch: the workers' `INFERQ_MAX_BATCH_SIZE` and the raw loop's large batch.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,

    /// Workers' `INFERQ_MAX_BATCH_DELAY_MS`: how long a worker waits for more jobs to fill a
    /// batch; default: the worker's own default (0, batch only what is already queued).
    #[arg(long)]
    batch_delay_ms: Option<u64>,

    /// Seconds each raw loop (batch 1, then max batch) runs.
    #[arg(long, default_value_t = 3.0)]
    raw_secs: f64,

    /// Skip the raw ONNX Runtime loops.
    #[arg(long)]
    skip_raw: bool,

    /// Drive an already running API at this URL (`http://host:port`) instead of starting one.
    #[arg(long)]
    target: Option<String>,

    /// ONNX Runtime shared library, for the raw loops and the workers.
    #[arg(
        long,
        env = "ORT_DYLIB_PATH",
        default_value = ".ort/libonnxruntime.so.1.31.1"
    )]
    ort_lib: PathBuf,

    /// Print a one-line JSON summary on stdout (the report goes to stderr).
    #[arg(long)]
    json: bool,

    /// Directory of the `inferq-api` and `inferq-worker` binaries; default: this binary's own.
    #[arg(long)]
    bin_dir: Option<PathBuf>,

    /// The API's async-runtime threads (`TOKIO_WORKER_THREADS`); default: the API's own (one
    /// per core).
    #[arg(long)]
    api_runtime_threads: Option<usize>,

    /// After the run, run the same load once more against the `inferq-api` and `inferq-worker`
    /// binaries in this directory (an older build) and print both builds' CPU per job and
    /// their ratio, measured minutes apart on the same machine.
    #[arg(long)]
    baseline_bin_dir: Option<PathBuf>,

    /// `redis-server` executable to start.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,

    /// Benchmark the speech_segments pipeline instead: this many concurrent copies
    /// (`--speech-jobs`) of this recording (a 16 kHz mono 16-bit WAV, e.g. the 10-minute
    /// tests/audio/bench-10min.wav from `scripts/gen_audio_fixtures.sh --bench`), against a
    /// single-stream Python onnxruntime loop over it.
    #[arg(long)]
    speech: Option<PathBuf>,

    /// Concurrent recordings for `--speech`.
    #[arg(long, default_value_t = 8)]
    speech_jobs: usize,

    /// Python with numpy and onnxruntime, for the `--speech` baseline.
    #[arg(long, default_value = ".venv-test/bin/python")]
    python: PathBuf,

    /// Seconds after submission an accepted job may take to finish before it counts as lost.
    #[arg(long, default_value_t = 120)]
    job_timeout_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Dropping `run` on a signal drops the cluster, which kills every process it started.
    tokio::select! {
        r = run(args) => match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("inferq-bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        () = inferq_shared::shutdown::signal() => {
            eprintln!("inferq-bench: interrupted; stopped every process it started");
            ExitCode::from(130)
        }
    }
}

/// Runs `f` on a plain thread (not tokio's blocking pool, which would hold the process open
/// on Ctrl-C until the raw loop ends).
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.context("the raw benchmark thread panicked")?
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(recording) = &args.speech {
        let bin_dir = match &args.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("this binary has no directory")?
                .to_owned(),
        };
        return speech::run(speech::SpeechArgs {
            recording: recording.clone(),
            jobs: args.speech_jobs.max(1),
            python: args.python.clone(),
            bin_dir,
            redis_server: args.redis_server.clone(),
            ort_lib: args.ort_lib.clone(),
            models_dir: PathBuf::from("models"),
            json: args.json,
        })
        .await;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads
        .unwrap_or_else(|| (cores / args.workers.max(1)).max(1));
    let model_dir = args.models_dir.join(&args.model);
    let onnx = model_dir.join("model.onnx");
    let needs_files = !args.skip_raw || args.target.is_none();
    if needs_files && !onnx.is_file() {
        bail!(
            "{} not found (the large model comes from `scripts/setup.sh --bench-models`, in bench-models/)",
            onnx.display()
        );
    }

    let raw = if args.skip_raw {
        None
    } else {
        Some(raw_limits(&args, &onnx, threads * args.workers.max(1)).await?)
    };

    let report = system(&args, args.bin_dir.clone(), raw, cores, threads, &model_dir).await?;
    let baseline = match &args.baseline_bin_dir {
        Some(dir) => {
            eprintln!("baseline: the same load against {}", dir.display());
            let base = system(&args, Some(dir.clone()), None, cores, threads, &model_dir).await?;
            eprint!("baseline {}", base.text(&args));
            Some(base)
        }
        None => None,
    };
    let mut text = report.text(&args);
    let mut json = report.json(&args);
    if let (Some(base), Some(now), Some(then)) = (
        &baseline,
        report.cpu_per_job_us(),
        baseline.as_ref().and_then(Report::cpu_per_job_us),
    ) {
        let ratio = now.system() / then.system();
        text.push_str(&format!(
            "  system CPU per job, this build / baseline: {:.0} µs / {:.0} µs = {ratio:.2} \
             ({:+.0} %)\n",
            now.system(),
            then.system(),
            (ratio - 1.0) * 100.0
        ));
        json["baseline"] = base.json(&args);
        json["cpu_ratio_to_baseline"] = serde_json::json!(ratio);
    }
    if args.json {
        eprint!("{text}");
        println!("{json}");
    } else {
        print!("{text}");
    }
    Ok(())
}

/// One run of the system: start Redis, the API (from `bin_dir`) and the workers (or use
/// `--target`), drive the load, take the CPU and memory figures, stop everything.
async fn system(
    args: &Args,
    bin_dir: Option<PathBuf>,
    raw: Option<(RawResult, RawResult)>,
    cores: usize,
    threads: usize,
    model_dir: &Path,
) -> anyhow::Result<Report> {
    let args = &Args {
        bin_dir,
        ..args.clone()
    };
    let mut cluster = match &args.target {
        Some(_) => None,
        None => Some(start_cluster(args, model_dir, threads).await?),
    };
    let api_url = match (&args.target, &cluster) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(c)) => c.api_url.clone(),
        (None, None) => unreachable!("a cluster is started when there is no target"),
    };
    if let Some(c) = &cluster
        && c.workers.is_empty()
    {
        announce(c, args).await?;
    }
    let info = wait_for_model(&api_url, &args.model, cluster.as_mut()).await?;
    let input = info.inputs.first().context("the model has no inputs")?;
    anyhow::ensure!(
        info.inputs.len() == 1,
        "the benchmark drives single-input models; {} has {}",
        info.name,
        info.inputs.len()
    );
    let width = match args.width {
        Some(w) => w,
        None => input
            .shape
            .last()
            .and_then(|&d| usize::try_from(d).ok())
            .filter(|&d| d > 0)
            .context("the model's input width is not fixed; pass --width")?,
    };

    eprintln!(
        "load: {} jobs from {} client(s){} ...",
        args.jobs,
        args.concurrency,
        if let Some(n) = args.bulk {
            format!(", submit only, {n} per POST /jobs/batch")
        } else if args.submit_only {
            ", submit only".into()
        } else if args.submit_wait {
            ", submit and wait in one request".into()
        } else if args.oip_binary {
            ", OIP infer with binary tensors".into()
        } else {
            String::new()
        }
    );
    let commands_before = cluster.as_ref().map(Cluster::redis_commands);
    let before = CpuSample::take(cluster.as_ref());
    let load = load::run(LoadConfig {
        api_url,
        model: args.model.clone(),
        input: input.name.clone(),
        width,
        jobs: args.jobs,
        concurrency: args.concurrency,
        submit_only: args.submit_only,
        submit_wait: args.submit_wait,
        oip_binary: args.oip_binary,
        bulk: args.bulk.map(|n| n as usize),
        job_timeout: Duration::from_secs(args.job_timeout_secs),
    })
    .await?;
    let cpu = CpuSample::take(cluster.as_ref()).since(before);
    let redis_commands = match (&cluster, commands_before) {
        (Some(c), Some(before)) => report::per_job(&before, &c.redis_commands(), args.jobs),
        _ => Vec::new(),
    };
    let api_memory = cluster.as_ref().and_then(|c| {
        Some((
            procfs::memory(c.api.pid(), "VmHWM")?,
            procfs::memory(c.api.pid(), "VmRSS")?,
        ))
    });
    if let Some(c) = &mut cluster {
        // A process that died during the load explains its failures better than any figure.
        c.check_alive()?;
    }
    drop(cluster);

    Ok(Report {
        model: args.model.clone(),
        input: input.name.clone(),
        width,
        cores,
        workers: args.workers,
        threads,
        raw,
        load,
        cpu,
        api_memory,
        redis_commands,
    })
}

/// The raw loop at batch 1 and at the max batch, on `threads` sessions.
async fn raw_limits(
    args: &Args,
    onnx: &Path,
    threads: usize,
) -> anyhow::Result<(RawResult, RawResult)> {
    let (path, lib, width, batch) = (
        onnx.to_owned(),
        args.ort_lib.clone(),
        args.width,
        args.max_batch,
    );
    let secs = Duration::from_secs_f64(args.raw_secs.max(0.1));
    eprintln!(
        "raw loop: {threads} thread(s), batch 1 and {batch}, {:.1} s each ...",
        secs.as_secs_f64()
    );
    off_runtime(move || {
        session::init_runtime(&lib)?;
        let (input, found) = raw::model_input(&path)?;
        let width = width
            .or(found)
            .context("the model's input width is not fixed; pass --width")?;
        let one = raw::measure(&path, &input, width, threads, 1, secs)?;
        let many = raw::measure(&path, &input, width, threads, batch, secs)?;
        Ok((one, many))
    })
    .await
}

async fn start_cluster(args: &Args, model_dir: &Path, threads: usize) -> anyhow::Result<Cluster> {
    eprintln!(
        "starting redis-server, inferq-api and {} inferq-worker(s) x {threads} thread(s) ...",
        args.workers
    );
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_owned(),
    };
    Cluster::start(&ClusterConfig {
        bin_dir,
        redis_server: args.redis_server.clone(),
        model_dir: model_dir.to_owned(),
        model: args.model.clone(),
        ort_lib: args.ort_lib.clone(),
        workers: args.workers,
        threads,
        max_batch: args.max_batch,
        batch_delay_ms: args.batch_delay_ms,
        max_queued: args.jobs.max(100_000),
        api_runtime_threads: args.api_runtime_threads,
    })
    .await
}

/// With no workers, nothing tells the API about the model; publish its metadata the way a
/// worker does, so submissions are accepted and simply queue up.
async fn announce(cluster: &Cluster, args: &Args) -> anyhow::Result<()> {
    let (lib, dir, model, max_batch) = (
        args.ort_lib.clone(),
        cluster.models_dir.clone(),
        args.model.clone(),
        args.max_batch,
    );
    let models = off_runtime(move || {
        session::init_runtime(&lib)?;
        let defaults = models::BatchDefaults {
            max_batch_size: max_batch.max(1),
            max_batch_delay: Duration::ZERO,
        };
        Ok(models::discover(&dir, &[model], defaults)?)
    })
    .await?;
    let infos: Vec<ModelInfo> = models.iter().map(|m| (*m.info).clone()).collect();
    let queue = Queue::connect(
        &RedisConfig::new(&cluster.redis_url, &cluster.namespace),
        Duration::ZERO,
    )
    .await?;
    queue.announce_models("inferq-bench", &infos).await?;
    Ok(())
}

/// Polls `GET /models` until the model is listed (a worker loaded it and announced it).
async fn wait_for_model(
    api_url: &str,
    model: &str,
    mut cluster: Option<&mut Cluster>,
) -> anyhow::Result<ModelInfo> {
    #[derive(serde::Deserialize)]
    struct Models {
        models: Vec<ModelInfo>,
    }
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("{api_url}/models");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(resp) = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && let Ok(list) = resp.json::<Models>().await
            && let Some(info) = list.models.into_iter().find(|m| m.name == model)
        {
            return Ok(info);
        }
        if let Some(c) = cluster.as_deref_mut() {
            c.check_alive()?;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{url} did not list model '{model}' within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
