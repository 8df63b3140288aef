//! The system under test, started by the benchmark itself: a private `redis-server`, one
//! `inferq-api` and N `inferq-worker` processes from the release binaries, in a temporary
//! directory holding only the benchmarked model. Dropping a [`Cluster`] kills and reaps every
//! process it started and removes the directory, on success, error, panic or Ctrl-C alike.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::topology::Topology;

/// Redis key namespace of the benchmark's own Redis.
const NAMESPACE: &str = "bench";

/// How long Redis and the API get to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    pub bin_dir: PathBuf,
    pub redis_server: PathBuf,
    /// `<models-dir>/<model>`: holds `model.onnx` and maybe `model.toml`.
    pub model_dir: PathBuf,
    pub model: String,
    pub ort_lib: PathBuf,
    pub workers: usize,
    pub threads: usize,
    pub max_batch: usize,
    pub batch_delay_ms: Option<u64>,
    pub max_queued: usize,
    /// The API's `TOKIO_WORKER_THREADS`; `None`: its default (one per core).
    pub api_runtime_threads: Option<usize>,
    /// More environment for the API and for the workers (what `--feature`s need).
    pub api_env: Vec<(&'static str, String)>,
    pub worker_env: Vec<(&'static str, String)>,
    /// Where Redis is: one node, a node with a replica, or a cluster (`--redis`).
    pub topology: Topology,
}

/// One child process, killed and reaped on drop.
pub(crate) struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: String, mut cmd: Command, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // Its own process group: a terminal's Ctrl-C reaches only the benchmark, which then
        // stops everything it started in a known order.
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self { name, child, log })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of its log if the process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); end of its log:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The end of a log, or, when the process printed an `Error:` (anyhow's report, maybe followed
/// by a long backtrace), the lines from there.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("Error:"))
        .unwrap_or(lines.len().saturating_sub(20));
    lines[from..lines.len().min(from + 20)].join("\n")
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Redis, the API and the workers, running. Fields drop in declaration order: workers first,
/// then the API, then Redis, then the directory.
pub(crate) struct Cluster {
    pub workers: Vec<Proc>,
    pub api: Proc,
    pub redis: Proc,
    /// The other Redis nodes of the topology (a replica, or the other masters).
    pub other_redis: Vec<(SocketAddr, Proc)>,
    pub api_url: String,
    pub redis_url: String,
    redis_addr: SocketAddr,
    /// Whether every node holds part of the namespace (the cluster's masters), so memory and
    /// commands are summed over them all; else the main node holds it all.
    spread: bool,
    pub namespace: String,
    /// The temporary models directory (only the benchmarked model).
    pub models_dir: PathBuf,
    _dir: TempDir,
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    // The port is released before the child binds it; nothing else on this machine is expected
    // to grab it in between.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("{} not found", path.display()))
}

/// Sends one inline command and reads a bulk-string reply (`$<len>\r\n<data>\r\n`).
pub(crate) fn redis_bulk(addr: SocketAddr, command: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if let Some(eol) = reply.iter().position(|&b| b == b'\n') {
            let len: usize = std::str::from_utf8(&reply[1..eol])
                .ok()
                .and_then(|l| l.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other("unexpected reply from redis"))?;
            if reply.len() >= eol + 1 + len {
                return Ok(String::from_utf8_lossy(&reply[eol + 1..eol + 1 + len]).into_owned());
            }
        }
    }
    Err(std::io::Error::other("redis closed the connection"))
}

/// Calls per Redis command (`INFO commandstats`), Lua-internal calls included.
pub(crate) fn parse_command_stats(info: &str) -> Vec<(String, u64)> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

pub(crate) fn redis_answers(addr: SocketAddr) -> bool {
    let ping = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        Ok(&buf == b"+PONG\r\n")
    };
    ping().unwrap_or(false)
}

impl Cluster {
    /// Starts Redis, then the API, then the workers; returns once Redis answers and the API is
    /// ready. Waiting for the workers to announce the model is the caller's job.
    pub(crate) async fn start(cfg: &ClusterConfig) -> anyhow::Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let root = std::env::temp_dir().join(format!(
            "inferq-bench-{}-{}",
            std::process::id(),
            stamp % 1_000_000_000
        ));
        let dir = TempDir(root.clone());
        let models_dir = root.join("models");
        let model_dir = models_dir.join(&cfg.model);
        std::fs::create_dir_all(&model_dir)
            .with_context(|| format!("creating {}", model_dir.display()))?;
        for file in ["model.onnx", "model.toml", "tokenizer.json"] {
            let src = cfg.model_dir.join(file);
            if file == "model.onnx" || src.exists() {
                std::os::unix::fs::symlink(absolute(&src)?, model_dir.join(file))?;
            }
        }
        let bin = |name: &str| -> anyhow::Result<PathBuf> {
            let path = cfg.bin_dir.join(name);
            anyhow::ensure!(
                path.is_file(),
                "{} not found: build it with `cargo build --release -p inferq-api -p inferq-worker` (or pass --bin-dir)",
                path.display()
            );
            Ok(path)
        };
        let (api_bin, worker_bin) = (bin("inferq-api")?, bin("inferq-worker")?);
        let ort_lib = absolute(&cfg.ort_lib)?;

        let redises =
            crate::topology::start(cfg.topology, &cfg.redis_server, &root, NAMESPACE).await?;
        let (mut redis, redis_addr) = (redises.main, redises.main_addr);
        redis.check_alive()?;
        let redis_url = format!("redis://{redis_addr}");

        let api_port = free_port()?;
        let mut cmd = Command::new(api_bin);
        // The benchmark measures the job path on a private loopback API: no API keys (the
        // API logs a warning about it), so every request is the same as before keys existed.
        cmd.env("INFERQ_BIND", format!("127.0.0.1:{api_port}"))
            .envs(
                redises
                    .env
                    .iter()
                    .chain(&redises.api_env)
                    .map(|(k, v)| (k, v)),
            )
            .env("INFERQ_NAMESPACE", NAMESPACE)
            .env("INFERQ_MAX_QUEUED", cfg.max_queued.to_string())
            .env("INFERQ_AUTH", "disabled");
        if let Some(n) = cfg.api_runtime_threads {
            cmd.env("TOKIO_WORKER_THREADS", n.to_string());
        }
        cmd.envs(cfg.api_env.iter().map(|(k, v)| (k, v)));
        let api = Proc::spawn("inferq-api".into(), cmd, &root)?;
        let api_url = format!("http://127.0.0.1:{api_port}");

        let mut workers = Vec::with_capacity(cfg.workers);
        for i in 0..cfg.workers {
            let mut cmd = Command::new(&worker_bin);
            cmd.envs(redises.env.iter().map(|(k, v)| (k, v)))
                .env("INFERQ_NAMESPACE", NAMESPACE)
                .env("INFERQ_MODELS_DIR", &models_dir)
                .env("INFERQ_MODELS", &cfg.model)
                .env("INFERQ_THREADS", cfg.threads.to_string())
                .env("INFERQ_EMBEDDING_THREADS", cfg.threads.to_string())
                .env("INFERQ_INTRA_OP_THREADS", "1")
                .env("INFERQ_MAX_BATCH_SIZE", cfg.max_batch.to_string())
                .env("ORT_DYLIB_PATH", &ort_lib);
            if let Some(ms) = cfg.batch_delay_ms {
                cmd.env("INFERQ_MAX_BATCH_DELAY_MS", ms.to_string());
            }
            cmd.envs(cfg.worker_env.iter().map(|(k, v)| (k, v)));
            workers.push(Proc::spawn(format!("inferq-worker-{i}"), cmd, &root)?);
        }
        let mut cluster = Self {
            workers,
            api,
            redis,
            other_redis: redises.others,
            api_url,
            redis_url,
            redis_addr,
            spread: cfg.topology == Topology::Cluster,
            namespace: NAMESPACE.into(),
            models_dir,
            _dir: dir,
        };

        let client = reqwest::Client::builder().no_proxy().build()?;
        let ready = format!("{}/readyz", cluster.api_url);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ok = client
                .get(&ready)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            cluster.check_alive()?;
            anyhow::ensure!(Instant::now() < deadline, "inferq-api did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(cluster)
    }

    /// Each Redis node's CPU time so far, the namespace's node first (`addr`, time).
    pub(crate) fn redis_cpu_by_node(&self) -> Vec<(String, Duration)> {
        std::iter::once((self.redis_addr, &self.redis))
            .chain(self.other_redis.iter().map(|(a, p)| (*a, p)))
            .map(|(a, p)| {
                let cpu = crate::procfs::cpu_time(p.pid()).unwrap_or_default();
                (a.to_string(), cpu)
            })
            .collect()
    }

    /// The nodes that hold the namespace: every master of a cluster (its partitions spread
    /// over them), else the main node.
    fn holders(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.redis_addr];
        if self.spread {
            all.extend(self.other_redis.iter().map(|(a, _)| *a));
        }
        all
    }

    /// Redis's `used_memory` (`INFO memory`), in bytes, summed over the nodes that hold the
    /// namespace.
    pub(crate) fn redis_used_memory(&self) -> Option<u64> {
        self.holders()
            .into_iter()
            .map(|a| {
                let info = redis_bulk(a, "INFO memory").ok()?;
                info.lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .sum()
    }

    /// Webhook deliveries not yet made (the members of every `…:hooks` set), summed over the
    /// nodes that hold the namespace.
    pub(crate) fn pending_webhooks(&self) -> Option<u64> {
        let count = "EVAL \"local n = 0 for _, k in ipairs(redis.call('KEYS', '*:hooks')) do \
            n = n + redis.call('ZCARD', k) end return tostring(n)\" 0";
        self.holders()
            .into_iter()
            .map(|a| redis_bulk(a, count).ok()?.trim().parse::<u64>().ok())
            .sum()
    }

    /// Redis commands executed so far, by name, summed over the nodes that hold the
    /// namespace.
    pub(crate) fn redis_commands(&self) -> Vec<(String, u64)> {
        let mut all: std::collections::BTreeMap<String, u64> = Default::default();
        for a in self.holders() {
            let info = redis_bulk(a, "INFO commandstats").unwrap_or_default();
            for (name, calls) in parse_command_stats(&info) {
                *all.entry(name).or_default() += calls;
            }
        }
        all.into_iter().collect()
    }

    /// Fails with a log excerpt if any process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        self.redis.check_alive()?;
        self.other_redis
            .iter_mut()
            .try_for_each(|(_, p)| p.check_alive())?;
        self.api.check_alive()?;
        self.workers.iter_mut().try_for_each(Proc::check_alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_stats_parse() {
        let info = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,rejected_calls=0,failed_calls=0\r\ncmdstat_hgetall:calls=7,usec=9,usec_per_call=1.29,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(
            parse_command_stats(info),
            vec![("evalsha".to_owned(), 12), ("hgetall".to_owned(), 7)]
        );
    }
}
