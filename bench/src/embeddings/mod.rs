//! `inferq-bench --embeddings <texts>`: the text_embeddings pipeline's throughput (texts per
//! second) for a corpus of short and medium texts submitted as concurrent jobs through the
//! whole system (Redis, API, two workers), next to a single-thread Python onnxruntime loop
//! over the same model at batch 1 (scripts/embedding_reference.py --bench), measured in the
//! same run, on the same machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterConfig};

mod batch_api;

/// What the embeddings benchmark needs from the command line.
#[derive(Debug)]
pub(crate) struct EmbeddingArgs {
    pub(crate) texts: usize,
    pub(crate) jobs: usize,
    /// Through the OpenAI Batch API (one request per text) instead of `jobs` jobs.
    pub(crate) batch_api: bool,
    pub(crate) workers: usize,
    pub(crate) python: PathBuf,
    pub(crate) bin_dir: PathBuf,
    pub(crate) redis_server: PathBuf,
    pub(crate) ort_lib: PathBuf,
    pub(crate) models_dir: PathBuf,
    pub(crate) json: bool,
}

/// The Python baseline's answer.
#[derive(Debug, serde::Deserialize)]
struct Baseline {
    texts: usize,
    seconds: f64,
}

const MODEL: &str = "all-MiniLM-L6-v2";

/// Seconds each Python baseline run lasts (it embeds one text at a time until then).
const BASELINE_SECONDS: f64 = 15.0;

/// Half short texts (6 to 15 words), half medium ones (40 to 100 words), deterministic.
fn corpus(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the",
        "queue",
        "holds",
        "every",
        "job",
        "until",
        "a",
        "worker",
        "takes",
        "it",
        "and",
        "writes",
        "its",
        "result",
        "back",
        "to",
        "redis",
        "while",
        "clients",
        "poll",
        "for",
        "status",
        "embedding",
        "documents",
        "retrieval",
        "search",
        "index",
        "vector",
        "model",
        "tokens",
        "batch",
        "lease",
        "crash",
        "recovery",
        "progress",
        "throughput",
        "latency",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m as u64) as usize
    };
    (0..n)
        .map(|k| {
            let len = if k % 2 == 0 {
                6 + next(10)
            } else {
                40 + next(61)
            };
            let words: Vec<&str> = (0..len).map(|_| WORDS[next(WORDS.len())]).collect();
            format!("{}.", words.join(" "))
        })
        .collect()
}

pub(crate) async fn run(args: EmbeddingArgs) -> anyhow::Result<()> {
    let texts = corpus(args.texts.max(args.jobs));
    let file = std::env::temp_dir().join(format!("inferq-bench-texts-{}.txt", std::process::id()));
    std::fs::write(&file, texts.join("\n")).context("writing the corpus")?;
    let model_dir = args.models_dir.join(MODEL);

    eprintln!("python baseline: onnxruntime batch-1 loop on one thread ...");
    let first = python_baseline(&args.python, &model_dir, &file).await?;

    eprintln!(
        "starting redis-server, inferq-api and {} inferq-workers ...",
        args.workers
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cluster = Cluster::start(&ClusterConfig {
        topology: crate::topology::Topology::Node,
        bin_dir: args.bin_dir.clone(),
        redis_server: args.redis_server.clone(),
        model_dir: model_dir.clone(),
        model: MODEL.into(),
        ort_lib: args.ort_lib.clone(),
        workers: args.workers,
        threads: (cores / args.workers.max(1)).max(1),
        max_batch: 32,
        batch_delay_ms: None,
        max_queued: 100_000,
        api_runtime_threads: None,
        api_env: Vec::new(),
        worker_env: Vec::new(),
    })
    .await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()?;
    wait_ready(&client, &cluster, args.workers).await?;

    let per_job = texts.len().div_ceil(args.jobs.max(1));
    let started = Instant::now();
    let mut ids = Vec::new();
    let mut embedded = 0;
    let mut tokens = 0;
    if args.batch_api {
        eprintln!(
            "load: {} texts as one batch through /v1/batches ...",
            texts.len()
        );
        (embedded, tokens) = batch_api::run(&client, &cluster, &texts).await?;
        ids.push(String::new());
    } else {
        eprintln!(
            "load: {} texts in {} jobs of {per_job} ...",
            texts.len(),
            texts.chunks(per_job).len()
        );
        for chunk in texts.chunks(per_job) {
            ids.push(submit(&client, &cluster.api_url, chunk).await?);
        }
    }
    for id in ids.iter().filter(|id| !id.is_empty()) {
        loop {
            let rec: Value = client
                .get(format!("{}/status/{id}", cluster.api_url))
                .send()
                .await?
                .json()
                .await?;
            match rec["status"].as_str() {
                Some("succeeded") => {
                    embedded += rec["result"]["embeddings"].as_array().map_or(0, Vec::len);
                    tokens += rec["result"]["total_tokens"].as_u64().unwrap_or(0);
                    break;
                }
                Some("failed" | "cancelled") => bail!("job {id} ended {rec}"),
                _ => {}
            }
            cluster.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        embedded == texts.len(),
        "{embedded} vectors for {} texts",
        texts.len()
    );
    drop(cluster);
    eprintln!("python baseline again ...");
    let second = python_baseline(&args.python, &model_dir, &file).await?;
    let _ = std::fs::remove_file(&file);
    let rate = embedded as f64 / wall;
    let base_rate = (first.texts + second.texts) as f64 / (first.seconds + second.seconds);
    let text = format!(
        "text_embeddings: {n} texts (half 6-15 words, half 40-100; {tokens} tokens), {how}, {workers} workers\n\
         | | texts | seconds | texts/s |\n\
         |---|---:|---:|---:|\n\
         | Python onnxruntime, batch 1, one thread (two runs, before and after) | {bt} | {bs:.1} | {base_rate:.0} |\n\
         | inferq, {workers} workers | {embedded} | {wall:.1} | {rate:.0} |\n\
         ratio: {ratio:.2}x the Python loop\n",
        n = texts.len(),
        how = if args.batch_api {
            "one request per text through the Batch API".to_owned()
        } else {
            format!("{} jobs", ids.len())
        },
        workers = args.workers,
        bt = first.texts + second.texts,
        bs = first.seconds + second.seconds,
        ratio = rate / base_rate,
    );
    if args.json {
        eprint!("{text}");
        println!(
            "{}",
            json!({
                "mode": "embeddings", "texts": embedded, "jobs": ids.len(),
                "batch_api": args.batch_api,
                "workers": args.workers, "wall_seconds": wall, "texts_per_second": rate,
                "python_texts_per_second": base_rate, "ratio": rate / base_rate,
                "tokens": tokens,
            })
        );
    } else {
        print!("{text}");
    }
    Ok(())
}

async fn python_baseline(python: &Path, model_dir: &Path, file: &Path) -> anyhow::Result<Baseline> {
    let out = tokio::process::Command::new(python)
        .arg("scripts/embedding_reference.py")
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--bench")
        .arg(file)
        .arg("--seconds")
        .arg(BASELINE_SECONDS.to_string())
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "the Python baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn wait_ready(
    client: &reqwest::Client,
    cluster: &Cluster,
    workers: usize,
) -> anyhow::Result<()> {
    // Each worker announces the model once its sessions (and the embedding engine) are up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client
            .get(format!("{}/models", cluster.api_url))
            .send()
            .await
            && let Ok(v) = r.json::<Value>().await
            && v["models"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|m| m["workers"].as_u64() >= Some(workers as u64))
            })
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the workers did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(client: &reqwest::Client, api: &str, texts: &[String]) -> anyhow::Result<String> {
    let body = json!({
        "pipeline": "text_embeddings", "texts": texts,
        "parameters": {"encoding_format": "base64"},
    });
    let r = client
        .post(format!("{api}/jobs"))
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    anyhow::ensure!(status.as_u16() == 202, "submission answered {status}: {v}");
    Ok(v["id"].as_str().context("no id")?.to_owned())
}
