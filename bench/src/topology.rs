//! The benchmark's Redis in each connection mode (`--redis`): one node; one node with a replica,
//! the API holding each submission's answer until the replica has it
//! (`INFERQ_REDIS_WAIT_REPLICAS=1`: what durability across a failover costs); or a Redis
//! Cluster of three masters made with `redis-cli --cluster create` (`INFERQ_REDIS_CLUSTER`),
//! whose CPU per job the report shows master by master.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster::{Proc, free_port, redis_answers, redis_bulk};

/// Where the benchmark's Redis is.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Topology {
    /// One `redis-server`.
    #[default]
    Node,
    /// One `redis-server` and its replica; the API waits for the replica
    /// (`INFERQ_REDIS_WAIT_REPLICAS=1`).
    Replica,
    /// Three masters in a Redis Cluster (no replicas).
    Cluster,
}

/// The Redis processes of a run and the settings that point inferq at them.
pub(crate) struct Redises {
    /// The node that holds the namespace (its memory and commands are the run's figures).
    pub main: Proc,
    pub main_addr: SocketAddr,
    /// The other nodes: the replica, or the other masters.
    pub others: Vec<(SocketAddr, Proc)>,
    /// Settings for the API and the workers (where Redis is).
    pub env: Vec<(&'static str, String)>,
    /// Settings for the API only.
    pub api_env: Vec<(&'static str, String)>,
}

/// How long the nodes get to start, sync and agree on the cluster.
const TIMEOUT: Duration = Duration::from_secs(30);

fn server(redis_server: &Path, root: &Path, port: u16, extra: &[String]) -> anyhow::Result<Proc> {
    let dir = root.join(format!("redis-{port}"));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new(redis_server);
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .args(extra);
    Proc::spawn(format!("redis-server-{port}"), cmd, root)
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while !ok() {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// Starts the Redis of `topology` under `root`, for the key namespace `namespace`.
pub(crate) async fn start(
    topology: Topology,
    redis_server: &Path,
    root: &Path,
    namespace: &str,
) -> anyhow::Result<Redises> {
    let cluster_args = || -> anyhow::Result<Vec<String>> {
        Ok(vec![
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-port".into(),
            free_port()?.to_string(),
        ])
    };
    match topology {
        Topology::Node | Topology::Replica => {
            let port = free_port()?;
            let main = server(redis_server, root, port, &[])?;
            until("redis-server answers PING", || redis_answers(addr(port))).await?;
            let mut redises = Redises {
                main,
                main_addr: addr(port),
                others: Vec::new(),
                env: vec![("INFERQ_REDIS_URL", format!("redis://127.0.0.1:{port}"))],
                api_env: Vec::new(),
            };
            if topology == Topology::Replica {
                let replica_port = free_port()?;
                let of = ["--replicaof".into(), "127.0.0.1".into(), port.to_string()];
                let replica = server(redis_server, root, replica_port, &of)?;
                until("the replica is in sync", || {
                    redis_bulk(addr(replica_port), "INFO replication")
                        .is_ok_and(|i| i.contains("master_link_status:up"))
                })
                .await?;
                redises.others.push((addr(replica_port), replica));
                redises
                    .api_env
                    .push(("INFERQ_REDIS_WAIT_REPLICAS", "1".to_owned()));
            }
            Ok(redises)
        }
        Topology::Cluster => {
            let mut nodes = Vec::new();
            for _ in 0..3 {
                let port = free_port()?;
                nodes.push((
                    addr(port),
                    server(redis_server, root, port, &cluster_args()?)?,
                ));
            }
            for (a, _) in &nodes {
                until("redis-server answers PING", || redis_answers(*a)).await?;
            }
            let out = Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(nodes.iter().map(|(a, _)| a.to_string()))
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
                .context("running redis-cli --cluster create")?;
            anyhow::ensure!(
                out.status.success(),
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            until("the cluster is ok", || {
                nodes.iter().all(|(a, _)| {
                    redis_bulk(*a, "CLUSTER INFO").is_ok_and(|i| i.contains("cluster_state:ok"))
                })
            })
            .await?;
            let seeds = nodes
                .iter()
                .map(|(a, _)| format!("redis://{a}"))
                .collect::<Vec<_>>()
                .join(",");
            let holder = holder_of(&nodes, &format!("{{{namespace}}}"))?;
            let (main_addr, main) = nodes.remove(holder);
            Ok(Redises {
                main,
                main_addr,
                others: nodes,
                env: vec![("INFERQ_REDIS_CLUSTER", seeds)],
                api_env: Vec::new(),
            })
        }
    }
}

/// Which of `nodes` serves `key`'s slot (its own `myself` line of `CLUSTER NODES`).
fn holder_of(nodes: &[(SocketAddr, Proc)], key: &str) -> anyhow::Result<usize> {
    let slot: u64 = redis_integer(nodes[0].0, &format!("CLUSTER KEYSLOT {key}"))?;
    nodes
        .iter()
        .position(|(a, _)| {
            redis_bulk(*a, "CLUSTER NODES").is_ok_and(|text| {
                text.lines()
                    .filter(|l| l.contains("myself"))
                    .flat_map(|l| l.split_whitespace().skip(8))
                    .any(|range| {
                        let mut ends = range.split('-').filter_map(|p| p.parse::<u64>().ok());
                        match (ends.next(), ends.next()) {
                            (Some(a), Some(b)) => (a..=b).contains(&slot),
                            (Some(a), None) => a == slot,
                            _ => false,
                        }
                    })
            })
        })
        .context("no master serves the namespace's slot")
}

/// Sends one inline command and reads an integer reply (`:<n>\r\n`).
fn redis_integer(addr: SocketAddr, command: &str) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    let reply = std::str::from_utf8(&buf[..n])?;
    reply
        .strip_prefix(':')
        .and_then(|r| r.trim().parse().ok())
        .with_context(|| format!("unexpected reply to {command}: {reply:?}"))
}
