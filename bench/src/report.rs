//! The report of one run: CPU time per process, the human-readable summary and the JSON line.

use std::time::Duration;

use serde_json::json;

use crate::args::Args;
use crate::cluster::Cluster;
use crate::load::LoadResult;
use crate::procfs;
use crate::raw::RawResult;

/// CPU time of the processes that share the machine during the load.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    redis: Option<Duration>,
    api: Option<Duration>,
    workers: Option<Duration>,
    load: Option<Duration>,
    /// Every process on the machine, the benchmark's included.
    machine: Option<Duration>,
}

/// CPU per job, µs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuPerJob {
    pub redis: f64,
    pub api: f64,
    pub workers: f64,
    pub load: f64,
}

impl CpuPerJob {
    /// Redis, the API and the workers together: what the system itself spends on a job.
    pub(crate) fn system(&self) -> f64 {
        self.redis + self.api + self.workers
    }
}

impl CpuSample {
    pub(crate) fn take(cluster: Option<&Cluster>) -> Self {
        let workers = cluster
            .filter(|c| !c.workers.is_empty())
            .and_then(|c| c.workers.iter().map(|w| procfs::cpu_time(w.pid())).sum());
        Self {
            // Every node of the topology (a replica's, the other masters' too).
            redis: cluster.and_then(|c| {
                std::iter::once(&c.redis)
                    .chain(c.other_redis.iter().map(|(_, p)| p))
                    .map(|p| procfs::cpu_time(p.pid()))
                    .sum()
            }),
            api: cluster.and_then(|c| procfs::cpu_time(c.api.pid())),
            workers,
            load: procfs::cpu_time(std::process::id()),
            machine: procfs::machine_busy(),
        }
    }

    /// Busy time of processes the benchmark did not start (other work on the machine).
    fn others(&self) -> Option<Duration> {
        let ours = [self.redis, self.api, self.workers, self.load]
            .into_iter()
            .flatten()
            .sum::<Duration>();
        Some(self.machine?.saturating_sub(ours))
    }

    pub(crate) fn since(self, before: Self) -> Self {
        let d = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        Self {
            redis: d(self.redis, before.redis),
            api: d(self.api, before.api),
            workers: d(self.workers, before.workers),
            load: d(self.load, before.load),
            machine: d(self.machine, before.machine),
        }
    }
}

/// Everything one run measured.
pub(crate) struct Report {
    pub model: String,
    pub input: String,
    pub width: usize,
    pub cores: usize,
    pub workers: usize,
    pub threads: usize,
    pub raw: Option<(RawResult, RawResult)>,
    pub load: LoadResult,
    pub cpu: CpuSample,
    pub api_memory: Option<(u64, u64)>,
    /// Growth of Redis's `used_memory` over the load (bytes, may be negative) and the jobs
    /// that finished in it.
    pub redis_memory: Option<(i64, usize)>,
    /// Redis commands per submitted job during the load, most frequent first.
    pub redis_commands: Vec<(String, f64)>,
    /// On a cluster: each master's CPU per job (µs), the one holding the namespace's own keys first.
    pub redis_nodes: Vec<(String, f64)>,
}

/// The growth of each command's call count from `before` to `after`, divided by `jobs`
/// (the benchmark's own `INFO` calls left out).
pub(crate) fn per_job(
    before: &[(String, u64)],
    after: &[(String, u64)],
    jobs: usize,
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = after
        .iter()
        .filter(|(name, _)| name != "info")
        .map(|(name, calls)| {
            let was = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, c)| *c);
            (
                name.clone(),
                calls.saturating_sub(was) as f64 / jobs.max(1) as f64,
            )
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
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

    /// Redis memory per finished job, in bytes.
    fn redis_memory_per_job(&self) -> Option<f64> {
        let (delta, jobs) = self.redis_memory?;
        (jobs > 0).then(|| delta as f64 / jobs as f64)
    }

    pub(crate) fn completed_per_sec(&self, args: &Args) -> Option<f64> {
        (!args.submit_only && self.wall() > 0.0).then(|| self.load.succeeded as f64 / self.wall())
    }

    /// CPU per accepted job, in µs: Redis, API, workers, their sum (the system under test)
    /// and the load generator. `None` when the benchmark started no processes of its own.
    pub(crate) fn cpu_per_job_us(&self) -> Option<CpuPerJob> {
        let jobs = self.load.accepted as f64;
        let us = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e6 / jobs);
        (jobs > 0.0 && self.cpu.api.is_some()).then(|| CpuPerJob {
            redis: us(self.cpu.redis),
            api: us(self.cpu.api),
            workers: us(self.cpu.workers),
            load: us(self.cpu.load),
        })
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

    pub(crate) fn text(&self, args: &Args) -> String {
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
                "{} worker(s) x {} thread(s), max batch {}{}",
                self.workers,
                self.threads,
                args.max_batch,
                args.batch_delay_ms
                    .map(|ms| format!(", batch delay {ms} ms"))
                    .unwrap_or_default()
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
                "  completed/s / raw batch 1: {one:.3}   / raw batch {}: {many:.4}",
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
            ("other processes", self.cpu.others()),
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
        if let Some(c) = self.cpu_per_job_us() {
            let _ = writeln!(
                s,
                "  CPU per job: Redis {:.0} µs + API {:.0} µs + workers {:.0} µs = {:.0} µs \
                 (load generator {:.0} µs)",
                c.redis,
                c.api,
                c.workers,
                c.system(),
                c.load
            );
        }
        if let Some((peak, now)) = self.api_memory {
            let _ = writeln!(
                s,
                "  inferq-api memory: peak RSS (VmHWM) {:.1} MiB, RSS at end {:.1} MiB",
                peak as f64 / 1_048_576.0,
                now as f64 / 1_048_576.0
            );
        }
        if let Some(per_job) = self.redis_memory_per_job() {
            let (delta, jobs) = self.redis_memory.unwrap_or_default();
            let _ = writeln!(
                s,
                "  Redis memory per finished job: {per_job:.0} B (used_memory {delta:+} B over \
                 {jobs} finished jobs, each kept for its retention)"
            );
        }
        if !self.redis_commands.is_empty() {
            let total: f64 = self.redis_commands.iter().map(|(_, n)| n).sum();
            let top: Vec<String> = self
                .redis_commands
                .iter()
                .take(8)
                .map(|(name, n)| format!("{name} {n:.2}"))
                .collect();
            let _ = writeln!(
                s,
                "  redis commands per job: {total:.2} (scripts' inner calls included): {}",
                top.join(", ")
            );
        }
        if !self.redis_nodes.is_empty() {
            let nodes: Vec<String> = self
                .redis_nodes
                .iter()
                .map(|(node, us)| format!("{node} {us:.1} µs"))
                .collect();
            let _ = writeln!(
                s,
                "  Redis CPU per job by master (the one holding the namespace's own keys first): {}",
                nodes.join(", ")
            );
        }
        for e in &l.errors {
            let _ = writeln!(s, "  error: {e}");
        }
        s
    }

    pub(crate) fn json(&self, args: &Args) -> serde_json::Value {
        let l = &self.load;
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let features: Vec<String> = args
            .features
            .iter()
            .map(|f| format!("{f:?}").to_lowercase())
            .collect();
        let mut v = json!({
            "model": self.model,
            "width": self.width,
            "cores": self.cores,
            "workers": self.workers,
            "threads": self.threads,
            "max_batch": args.max_batch,
            "batch_delay_ms": args.batch_delay_ms,
            "concurrency": args.concurrency,
            "jobs": args.jobs,
            "submit_only": args.submit_only,
            "submit_wait": args.submit_wait,
            "oip_binary": args.oip_binary,
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
            "cpu_other_secs": secs(self.cpu.others()),
            "cpu_us_per_job": self.cpu_per_job_us().map(|c| json!({
                "redis": c.redis,
                "api": c.api,
                "workers": c.workers,
                "system": c.system(),
                "load": c.load,
            })),
            "api_vmhwm_bytes": self.api_memory.map(|m| m.0),
            "api_vmrss_bytes": self.api_memory.map(|m| m.1),
            "redis_commands_per_job": self.redis_commands.iter().map(|(n, c)| (n.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "redis_cpu_us_per_job_by_master": self.redis_nodes.iter().map(|(n, us)| json!([n, us])).collect::<Vec<_>>(),
        });
        v["features"] = json!(features);
        v["redis_memory_per_job_bytes"] = json!(self.redis_memory_per_job());
        v
    }
}
