//! `inferq-bench`: measures the raw ONNX Runtime limit of a model in-process, then the whole
//! inferq system (Redis, API, workers) under concurrent HTTP load, and compares the two.
//!
//! ```text
//! cargo build --release -p inferq-bench -p inferq-api -p inferq-worker
//! target/release/inferq-bench --model mlp_small -n 20000 -c 32
//! ```

mod args;
mod cluster;
mod embeddings;
mod instant;
mod load;
mod procfs;
mod raw;
mod report;
mod speech;
mod system;
mod topology;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;

use crate::args::Args;
use crate::raw::raw_limits;
use crate::report::Report;
use crate::system::system;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(addr) = args.instant_server {
        return match instant::serve(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("inferq-bench --instant-server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // One thread drives the load (the load generator's ceiling is measured on it too).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the load generator's runtime");
    runtime.block_on(main_async(args))
}

async fn main_async(args: Args) -> ExitCode {
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

async fn run(args: Args) -> anyhow::Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_owned(),
    };
    if let Some(texts) = args.embeddings {
        return embeddings::run(embeddings::EmbeddingArgs {
            texts,
            jobs: args.embedding_jobs.max(1),
            batch_api: args.batch_api,
            workers: 2,
            python: args.python.clone(),
            bin_dir,
            redis_server: args.redis_server.clone(),
            ort_lib: args.ort_lib.clone(),
            models_dir: PathBuf::from("models"),
            json: args.json,
        })
        .await;
    }
    if let Some(recording) = &args.speech {
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
    if args.ceiling {
        let ceiling = ceiling(&args, &report).await?;
        let ratio = report.completed_per_sec(&args).map(|c| c / ceiling);
        text.push_str(&format!(
            "  load generator ceiling (the same load against an instant server): {ceiling:.0} \
             jobs/s; this run completed {} of it\n",
            ratio.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"))
        ));
        json["ceiling_per_sec"] = serde_json::json!(ceiling);
        json["ratio_to_ceiling"] = serde_json::json!(ratio);
    }
    if let (Some(base), Some(now), Some(then)) = (
        &baseline,
        report.cpu_per_job_us(),
        baseline.as_ref().and_then(Report::cpu_per_job_us),
    ) {
        let ratio = now.system() / then.system();
        let redis_ratio = now.redis / then.redis;
        text.push_str(&format!(
            "  system CPU per job, this build / baseline: {:.0} µs / {:.0} µs = {ratio:.2} \
             ({:+.0} %)\n  Redis CPU per job, this build / baseline: {:.0} µs / {:.0} µs = \
             {redis_ratio:.2}\n",
            now.system(),
            then.system(),
            (ratio - 1.0) * 100.0,
            now.redis,
            then.redis,
        ));
        json["redis_cpu_ratio_to_baseline"] = serde_json::json!(redis_ratio);
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

/// The same load as the run's, against the instant server: completed jobs per second.
async fn ceiling(args: &Args, report: &Report) -> anyhow::Result<f64> {
    eprintln!("ceiling: the same load against an instant server ...");
    let server = instant::InstantServer::start().await?;
    let load = load::run(report.load_config(args, server.url.clone())).await?;
    let cpu = procfs::cpu_time(server.pid());
    drop(server);
    anyhow::ensure!(
        load.succeeded == args.jobs,
        "the instant server answered {} of {} jobs",
        load.succeeded,
        args.jobs
    );
    if let Some(cpu) = cpu {
        eprintln!(
            "ceiling: {:.0} jobs/s; the instant server used {:.1} µs of CPU per job",
            load.succeeded as f64 / load.wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / args.jobs as f64
        );
    }
    Ok(load.succeeded as f64 / load.wall.as_secs_f64())
}
