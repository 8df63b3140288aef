//! `inferq-bench --speech <recording>`: the speech_segments pipeline's real-time factor
//! (seconds of audio per second of wall time) for N concurrent copies of one recording through
//! the whole system (Redis, API, one worker), next to a single-stream loop of the same model in
//! the onnxruntime Python package (scripts/speech_baseline.py, the silero-vad package's
//! algorithm) measured in the same run, on the same machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cluster::{Cluster, ClusterConfig};
use crate::procfs;

/// What the speech benchmark needs from the command line.
#[derive(Debug)]
pub(crate) struct SpeechArgs {
    pub(crate) recording: PathBuf,
    pub(crate) jobs: usize,
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
    audio_seconds: f64,
    wall_seconds: f64,
}

pub(crate) async fn run(args: SpeechArgs) -> anyhow::Result<()> {
    let audio = std::fs::read(&args.recording)
        .with_context(|| format!("reading {}", args.recording.display()))?;

    let load_before = loadavg();
    eprintln!(
        "python baseline: onnxruntime single-stream loop over {} ...",
        args.recording.display()
    );
    let first = python_baseline(&args.python, &args.recording).await?;

    eprintln!("starting redis-server, inferq-api and one inferq-worker ...");
    let mut cluster = Cluster::start(&ClusterConfig {
        topology: crate::topology::Topology::Node,
        bin_dir: args.bin_dir.clone(),
        redis_server: args.redis_server.clone(),
        model_dir: args.models_dir.join("silero_vad"),
        model: "silero_vad".into(),
        ort_lib: args.ort_lib.clone(),
        workers: 1,
        threads: 1,
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
        .timeout(Duration::from_secs(120))
        .build()?;
    wait_ready(&client, &cluster).await?;

    eprintln!("load: {} concurrent recordings ...", args.jobs);
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..args.jobs {
        ids.push(submit(&client, &cluster.api_url, &audio).await?);
    }
    let mut audio_seconds = 0.0;
    let mut trace: Vec<(f64, f64)> = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        loop {
            let rec: Value = client
                .get(format!("{}/status/{id}", cluster.api_url))
                .send()
                .await?
                .json()
                .await?;
            if k == 0
                && let Some(done) = rec["progress"]["done"].as_f64()
            {
                trace.push((started.elapsed().as_secs_f64(), done));
            }
            match rec["status"].as_str() {
                Some("succeeded") => {
                    audio_seconds += rec["result"]["duration"].as_f64().unwrap_or(0.0);
                    break;
                }
                Some("failed" | "cancelled") => bail!("job {id} ended {rec}"),
                _ => {}
            }
            cluster.check_alive()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let rtf = audio_seconds / wall;
    let worker_hwm = cluster
        .workers
        .first()
        .and_then(|w| procfs::memory(w.pid(), "VmHWM"));
    drop(cluster);
    // The baseline again after the load, so a change in what else runs on the machine
    // weighs on both sides alike; the two runs' mean is the baseline.
    eprintln!("python baseline again ...");
    let second = python_baseline(&args.python, &args.recording).await?;
    let load_after = loadavg();
    let baseline = Baseline {
        audio_seconds: first.audio_seconds,
        wall_seconds: (first.wall_seconds + second.wall_seconds) / 2.0,
    };
    let base_rtf = baseline.audio_seconds / baseline.wall_seconds;

    let text = format!(
        "speech_segments: {jobs} x {file} ({per:.0} s of audio each)\n\
         | | audio (s) | wall (s) | real-time factor |\n\
         |---|---:|---:|---:|\n\
         | Python onnxruntime, one stream (mean of {w1:.2} s before and {w2:.2} s after) | {ba:.0} | {bw:.2} | {base_rtf:.0}x |\n\
         | inferq, {jobs} concurrent jobs | {audio_seconds:.0} | {wall:.2} | {rtf:.0}x |\n\
         ratio: {ratio:.2}x the Python loop; worker peak RSS {hwm}; load average {load_before} before, {load_after} after\n\
         progress of the first job (s since submission -> s of audio done): {trace}\n",
        jobs = args.jobs,
        file = args.recording.display(),
        per = audio_seconds / args.jobs.max(1) as f64,
        w1 = first.wall_seconds,
        w2 = second.wall_seconds,
        ba = baseline.audio_seconds,
        bw = baseline.wall_seconds,
        ratio = rtf / base_rtf,
        hwm = worker_hwm.map_or("?".into(), |b| format!("{} MiB", b / (1024 * 1024))),
        trace = trace
            .iter()
            .step_by((trace.len() / 12).max(1))
            .map(|(t, d)| format!("{t:.1}->{d:.0}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if args.json {
        eprint!("{text}");
        println!(
            "{}",
            serde_json::json!({
                "mode": "speech", "jobs": args.jobs, "audio_seconds": audio_seconds,
                "wall_seconds": wall, "rtf": rtf, "python_rtf": base_rtf,
                "ratio": rtf / base_rtf, "worker_vmhwm_bytes": worker_hwm,
                "python_wall_seconds": [first.wall_seconds, second.wall_seconds],
                "loadavg_before": load_before, "loadavg_after": load_after,
            })
        );
    } else {
        print!("{text}");
    }
    Ok(())
}

/// The 1-minute load average, as a hint of what else ran.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

async fn python_baseline(python: &Path, recording: &Path) -> anyhow::Result<Baseline> {
    let out = tokio::process::Command::new(python)
        .arg("scripts/speech_baseline.py")
        .arg(recording)
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

async fn wait_ready(client: &reqwest::Client, cluster: &Cluster) -> anyhow::Result<()> {
    // The worker announces the model once its sessions (and the speech engine) are up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client
            .get(format!("{}/models", cluster.api_url))
            .send()
            .await
            && let Ok(v) = r.json::<Value>().await
            && v["models"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["workers"].as_u64() > Some(0)))
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the worker did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(client: &reqwest::Client, api: &str, audio: &[u8]) -> anyhow::Result<String> {
    let boundary = "inferq-bench-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"pipeline\"\r\n\r\nspeech_segments\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = client
        .post(format!("{api}/jobs"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    anyhow::ensure!(status.as_u16() == 202, "submission answered {status}: {v}");
    Ok(v["id"].as_str().context("no id")?.to_owned())
}
