//! One run of the whole system: Redis, the API and the workers started (or a `--target`
//! used), the model awaited, the load driven, the CPU, memory and Redis figures taken.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use inferq_shared::config::RedisConfig;
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::Queue;
use inferq_worker::infer::{models, runtime as session};

use crate::args::{Args, Feature};
use crate::cluster::{Cluster, ClusterConfig};
use crate::instant::InstantServer;
use crate::load::{self, LoadConfig};
use crate::procfs;
use crate::raw::{RawResult, off_runtime};
use crate::report::{self, CpuSample, Report};

/// One run of the system: start Redis, the API (from `bin_dir`) and the workers (or use
/// `--target`), drive the load, take the CPU and memory figures, stop everything.
pub(crate) async fn system(
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
    // A webhook needs a receiver: the instant server answers it at once.
    let receiver = if args.features.contains(&Feature::Webhook) {
        Some(InstantServer::start().await?)
    } else {
        None
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
    let memory_before = cluster.as_ref().and_then(Cluster::redis_used_memory);
    let before = CpuSample::take(cluster.as_ref());
    let nodes_before = cluster.as_ref().map(Cluster::redis_cpu_by_node);
    let mut cfg = load_config(args, api_url, &input.name, width);
    if let Some(r) = &receiver {
        cfg.extra.insert(
            "webhook".into(),
            serde_json::json!({"url": format!("{}/hook", r.url), "events": ["succeeded"]}),
        );
    }
    let load = load::run(cfg).await?;
    let cpu = CpuSample::take(cluster.as_ref()).since(before);
    let redis_nodes = match (&cluster, nodes_before) {
        (Some(c), Some(before)) if c.other_redis.len() > 1 => c
            .redis_cpu_by_node()
            .into_iter()
            .zip(before)
            .map(|((node, after), (_, before))| {
                let us = after.saturating_sub(before).as_secs_f64() * 1e6 / args.jobs as f64;
                (node, us)
            })
            .collect(),
        _ => Vec::new(),
    };
    let redis_commands = match (&cluster, commands_before) {
        (Some(c), Some(before)) => report::per_job(&before, &c.redis_commands(), args.jobs),
        _ => Vec::new(),
    };
    // Every job of a closed loop is terminal here, its record kept for its retention: the
    // growth is what finished jobs cost Redis (streams are empty again once acknowledged).
    // Webhooks are delivered after their jobs end: memory is read once they all were, so the
    // figure is what a finished job keeps, not its delivery while it waits.
    if let (Some(c), Some(_)) = (&cluster, &receiver) {
        let (ended, pending) = (Instant::now(), c.pending_webhooks().unwrap_or(0));
        let mut left = pending;
        while left > 0 && ended.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = c.pending_webhooks().unwrap_or(0);
        }
        eprintln!(
            "webhooks: {pending} deliveries pending when the load ended, {left} still pending \
             {:.1} s later",
            ended.elapsed().as_secs_f64()
        );
    }
    let redis_memory = match (&cluster, memory_before) {
        (Some(c), Some(before)) if !args.submit_only => c
            .redis_used_memory()
            .map(|after| (after as i64 - before as i64, load.succeeded)),
        _ => None,
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
        redis_memory,
        redis_commands,
        redis_nodes,
    })
}

/// The load of one run, against `api_url`.
fn load_config(args: &Args, api_url: String, input: &str, width: usize) -> LoadConfig {
    let mut parameters = serde_json::Map::new();
    for f in &args.features {
        let (name, value) = match f {
            Feature::Priority => ("priority", serde_json::json!(7)),
            Feature::Deadline => ("timeout_ms", serde_json::json!(60_000)),
            Feature::Cache => ("cache", serde_json::json!(true)),
            Feature::Retention => ("result_ttl_secs", serde_json::json!(3600)),
            Feature::Idempotency | Feature::Quota | Feature::Webhook => continue,
        };
        parameters.insert(name.into(), value);
    }
    let mut extra = serde_json::Map::new();
    if !parameters.is_empty() {
        extra.insert("parameters".into(), parameters.into());
    }
    LoadConfig {
        idempotency: args.features.contains(&Feature::Idempotency),
        extra,
        api_url,
        model: args.model.clone(),
        input: input.to_owned(),
        width,
        jobs: args.jobs,
        concurrency: args.concurrency,
        submit_only: args.submit_only,
        submit_wait: args.submit_wait,
        oip_binary: args.oip_binary,
        bulk: args.bulk.map(|n| n as usize),
        job_timeout: Duration::from_secs(args.job_timeout_secs),
    }
}

impl Report {
    /// This run's load, against another server (the instant server of `--ceiling`).
    pub(crate) fn load_config(&self, args: &Args, api_url: String) -> LoadConfig {
        load_config(args, api_url, &self.input, self.width)
    }
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
        api_env: feature_env(&args.features).0,
        worker_env: feature_env(&args.features).1,
        topology: args.redis,
    })
    .await
}

/// The API's and the workers' settings the features need.
type Env = Vec<(&'static str, String)>;

fn feature_env(features: &[Feature]) -> (Env, Env) {
    let (mut api, mut worker) = (Vec::new(), Vec::new());
    if features.contains(&Feature::Quota) {
        api.push(("INFERQ_TENANT_MAX_QUEUED", "1000000000".to_owned()));
    }
    if features.contains(&Feature::Webhook) {
        api.push(("INFERQ_FETCH_ALLOW", "127.0.0.1".to_owned()));
        // 16 bytes, base64: a signing key for the benchmark's deliveries only.
        worker.push((
            "INFERQ_WEBHOOK_SECRET",
            "whsec_aW5mZXJxLWJlbmNoLWtleSE=".to_owned(),
        ));
    }
    (api, worker)
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
