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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use inferq_shared::config::RedisConfig;
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::Queue;
use inferq_worker::engine;
use serde_json::json;

use crate::cluster::{Cluster, ClusterConfig};
use crate::load::{LoadConfig, LoadResult};
use crate::raw::RawResult;

/// Benchmark inferq: raw ONNX Runtime loop versus the whole system under HTTP load.
///
/// With `--json`, the human-readable report goes to stderr and one JSON summary line to stdout.
#[derive(Parser, Debug)]
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

    /// `redis-server` executable to start.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,

    /// Seconds after submission an accepted job may take to finish before it counts as lost.
    #[arg(long, default_value_t = 120)]
    job_timeout_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Dropping `run` on a signal drops the cluster, which kills every process it started.
    tokio::select! {
        r = run(args) => r,
        () = inferq_shared::shutdown::signal() => {
            bail!("interrupted; stopped every process the benchmark started")
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

/// CPU time of the processes that share the machine during the load.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    redis: Option<Duration>,
    api: Option<Duration>,
    workers: Option<Duration>,
    load: Option<Duration>,
}

impl CpuSample {
    fn take(cluster: Option<&Cluster>) -> Self {
        let workers = cluster.and_then(|c| {
            (!c.workers.is_empty())
                .then(|| {
                    c.workers
                        .iter()
                        .map(|w| procfs::cpu_time(w.pid()))
                        .sum::<Option<Duration>>()
                })
                .flatten()
        });
        Self {
            redis: cluster.and_then(|c| procfs::cpu_time(c.redis.pid())),
            api: cluster.and_then(|c| procfs::cpu_time(c.api.pid())),
            workers,
            load: procfs::cpu_time(std::process::id()),
        }
    }

    fn since(self, before: Self) -> Self {
        let d = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        Self {
            redis: d(self.redis, before.redis),
            api: d(self.api, before.api),
            workers: d(self.workers, before.workers),
            load: d(self.load, before.load),
        }
    }
}

/// Everything one run measured.
struct Report {
    model: String,
    input: String,
    width: usize,
    cores: usize,
    workers: usize,
    threads: usize,
    raw: Option<(RawResult, RawResult)>,
    load: LoadResult,
    cpu: CpuSample,
    api_memory: Option<(u64, u64)>,
}

async fn run(args: Args) -> anyhow::Result<()> {
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
        let raw_threads = threads * args.workers.max(1);
        let (path, lib, width, batch) = (
            onnx.clone(),
            args.ort_lib.clone(),
            args.width,
            args.max_batch,
        );
        let secs = Duration::from_secs_f64(args.raw_secs.max(0.1));
        eprintln!(
            "raw loop: {raw_threads} thread(s), batch 1 and {batch}, {:.1} s each ...",
            secs.as_secs_f64()
        );
        Some(
            off_runtime(move || {
                engine::init_runtime(&lib)?;
                let (input, found) = raw::model_input(&path)?;
                let width = width
                    .or(found)
                    .context("the model's input width is not fixed; pass --width")?;
                let one = raw::measure(&path, &input, width, raw_threads, 1, secs)?;
                let many = raw::measure(&path, &input, width, raw_threads, batch, secs)?;
                Ok((one, many))
            })
            .await?,
        )
    };

    let mut cluster = match &args.target {
        Some(_) => None,
        None => {
            eprintln!(
                "starting redis-server, inferq-api and {} inferq-worker(s) × {threads} thread(s) ...",
                args.workers
            );
            let bin_dir = match &args.bin_dir {
                Some(d) => d.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .context("this binary has no directory")?
                    .to_owned(),
            };
            Some(
                Cluster::start(&ClusterConfig {
                    bin_dir,
                    redis_server: args.redis_server.clone(),
                    model_dir: model_dir.clone(),
                    model: args.model.clone(),
                    ort_lib: args.ort_lib.clone(),
                    workers: args.workers,
                    threads,
                    max_batch: args.max_batch,
                    max_queued: args.jobs.max(100_000),
                })
                .await?,
            )
        }
    };
    let api_url = match (&args.target, &cluster) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(c)) => c.api_url.clone(),
        (None, None) => unreachable!("a cluster is started when there is no target"),
    };
    if let Some(c) = &cluster
        && c.workers.is_empty()
    {
        announce(c, &args).await?;
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
        if args.submit_only {
            ", submit only"
        } else {
            ""
        }
    );
    let before = CpuSample::take(cluster.as_ref());
    let load = load::run(LoadConfig {
        api_url,
        model: args.model.clone(),
        input: input.name.clone(),
        width,
        jobs: args.jobs,
        concurrency: args.concurrency,
        submit_only: args.submit_only,
        job_timeout: Duration::from_secs(args.job_timeout_secs),
    })
    .await?;
    let cpu = CpuSample::take(cluster.as_ref()).since(before);
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

    let report = Report {
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
    };
    let text = report.text(&args);
    if args.json {
        eprint!("{text}");
        println!("{}", report.json(&args));
    } else {
        print!("{text}");
    }
    Ok(())
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
        engine::init_runtime(&lib)?;
        let defaults = engine::BatchDefaults {
            max_batch_size: max_batch.max(1),
            max_batch_delay: Duration::ZERO,
        };
        Ok(engine::discover(&dir, &[model], defaults)?)
    })
    .await?;
    let infos: Vec<ModelInfo> = models.iter().map(|m| (*m.info).clone()).collect();
    let queue = Queue::connect(
        &RedisConfig::new(&cluster.redis_url, &cluster.namespace),
        Duration::ZERO,
    )
    .await?;
    queue.announce_models(&infos).await?;
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

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2} {unit}"))
}

impl Report {
    fn wall(&self) -> f64 {
        self.load.wall.as_secs_f64()
    }

    fn completed_per_sec(&self, args: &Args) -> Option<f64> {
        (!args.submit_only && self.wall() > 0.0).then(|| self.load.succeeded as f64 / self.wall())
    }

    fn accepted_per_sec(&self) -> f64 {
        let secs = self.load.submit_wall.as_secs_f64();
        if secs > 0.0 {
            self.load.accepted as f64 / secs
        } else {
            0.0
        }
    }

    /// Completed/s over the raw batch-1 and max-batch rates.
    fn ratios(&self, args: &Args) -> Option<(f64, f64)> {
        let done = self.completed_per_sec(args)?;
        let (one, many) = self.raw?;
        Some((done / one.rows_per_sec, done / many.rows_per_sec))
    }

    fn text(&self, args: &Args) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let l = &self.load;
        let _ = writeln!(
            s,
            "\ninferq-bench: model {} (input '{}', width {}), {} CPU core(s)",
            self.model, self.input, self.width, self.cores
        );
        if let Some((one, many)) = self.raw {
            let _ = writeln!(
                s,
                "raw ONNX Runtime loop ({} thread(s) x 1 intra-op thread, {:.1} s each):",
                one.threads, args.raw_secs
            );
            let _ = writeln!(s, "  batch 1:  {:>10.0} rows/s", one.rows_per_sec);
            let _ = writeln!(
                s,
                "  batch {}: {:>10.0} rows/s",
                many.batch, many.rows_per_sec
            );
        }
        let system = match &args.target {
            Some(url) => format!("running API at {url}"),
            None => format!(
                "{} worker(s) x {} thread(s), max batch {}",
                self.workers, self.threads, args.max_batch
            ),
        };
        let _ = writeln!(
            s,
            "system ({system}), {} client(s), {} job(s){}:",
            args.concurrency,
            args.jobs,
            if args.submit_only {
                ", submit only"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  accepted {}, succeeded {}, failed {}, rejected {}, status errors {}, lost {}",
            l.accepted, l.succeeded, l.failed, l.rejected, l.status_errors, l.lost
        );
        let _ = writeln!(
            s,
            "  accepted/s {:.0} over {:.2} s",
            self.accepted_per_sec(),
            l.submit_wall.as_secs_f64()
        );
        if let Some(done) = self.completed_per_sec(args) {
            let _ = writeln!(
                s,
                "  completed/s {done:.0} over {:.2} s (first submit to last result)",
                self.wall()
            );
            let _ = writeln!(
                s,
                "  latency p50 {}  p90 {}  p99 {}  max {}",
                fmt_opt(ms(l.percentile(0.5)), "ms"),
                fmt_opt(ms(l.percentile(0.9)), "ms"),
                fmt_opt(ms(l.percentile(0.99)), "ms"),
                fmt_opt(ms(l.percentile(1.0)), "ms"),
            );
        }
        if let Some((one, many)) = self.ratios(args) {
            let _ = writeln!(
                s,
                "  completed/s / raw batch 1: {one:.2}   / raw batch {}: {many:.2}",
                args.max_batch
            );
        }
        let _ = writeln!(
            s,
            "  CPU during the load ({:.2} s wall; 100% = one core):",
            self.wall()
        );
        for (name, t) in [
            ("redis-server", self.cpu.redis),
            ("inferq-api", self.cpu.api),
            ("inferq-worker(s)", self.cpu.workers),
            ("load generator", self.cpu.load),
        ] {
            if let Some(t) = t {
                let _ = writeln!(
                    s,
                    "    {name:<17} {:>7.2} s  {:>5.0}%",
                    t.as_secs_f64(),
                    100.0 * t.as_secs_f64() / self.wall().max(1e-9)
                );
            }
        }
        if let Some((peak, now)) = self.api_memory {
            let _ = writeln!(
                s,
                "  inferq-api memory: peak RSS (VmHWM) {:.1} MiB, RSS at end {:.1} MiB",
                peak as f64 / 1_048_576.0,
                now as f64 / 1_048_576.0
            );
        }
        for e in &l.errors {
            let _ = writeln!(s, "  error: {e}");
        }
        s
    }

    fn json(&self, args: &Args) -> serde_json::Value {
        let l = &self.load;
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        json!({
            "model": self.model,
            "width": self.width,
            "cores": self.cores,
            "workers": self.workers,
            "threads": self.threads,
            "max_batch": args.max_batch,
            "concurrency": args.concurrency,
            "jobs": args.jobs,
            "submit_only": args.submit_only,
            "target": args.target,
            "raw_batch1_per_sec": self.raw.map(|r| r.0.rows_per_sec),
            "raw_max_batch_per_sec": self.raw.map(|r| r.1.rows_per_sec),
            "accepted": l.accepted,
            "succeeded": l.succeeded,
            "failed": l.failed,
            "rejected": l.rejected,
            "status_errors": l.status_errors,
            "lost": l.lost,
            "accepted_per_sec": self.accepted_per_sec(),
            "completed_per_sec": self.completed_per_sec(args),
            "wall_secs": self.wall(),
            "p50_ms": ms(l.percentile(0.5)),
            "p90_ms": ms(l.percentile(0.9)),
            "p99_ms": ms(l.percentile(0.99)),
            "ratio_raw_batch1": self.ratios(args).map(|r| r.0),
            "ratio_raw_max_batch": self.ratios(args).map(|r| r.1),
            "cpu_redis_secs": secs(self.cpu.redis),
            "cpu_api_secs": secs(self.cpu.api),
            "cpu_workers_secs": secs(self.cpu.workers),
            "cpu_load_secs": secs(self.cpu.load),
            "api_vmhwm_bytes": self.api_memory.map(|m| m.0),
            "api_vmrss_bytes": self.api_memory.map(|m| m.1),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let load = LoadResult {
            latencies: (1..=100).rev().map(Duration::from_millis).collect(),
            ..LoadResult::default()
        };
        assert_eq!(load.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(load.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(load.percentile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(LoadResult::default().percentile(0.5), None);
    }

    #[test]
    fn input_data_is_deterministic_and_bounded() {
        let a = load::input_data(7, 1000);
        assert_eq!(a, load::input_data(7, 1000));
        assert_ne!(a, load::input_data(8, 1000));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn cli_parses() {
        Args::command().debug_assert();
        let a =
            Args::try_parse_from(["inferq-bench", "-n", "10", "-c", "2", "--submit-only"]).unwrap();
        assert_eq!((a.jobs, a.concurrency, a.submit_only), (10, 2, true));
    }
}
