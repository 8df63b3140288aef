//! Redis deployments beyond one node, for the connection-mode tests: a master and a replica
//! watched by three sentinels, and a Redis Cluster of three masters with a replica each made
//! by `redis-cli --cluster create`. Real `redis-server` processes (sentinels are
//! `redis-server --sentinel`) on loopback, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Redis, eventually_blocking, free_port};

/// `redis-cli -p <port> <args…>`'s output.
pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `redis-sentinel` process, killed on drop.
pub(crate) struct SentinelProcess {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master (appendonly, fsync always), its replica, and three sentinels monitoring it as
/// [`Sentinels::NAME`] with a quorum of two, declaring it down after one second.
pub(crate) struct Sentinels {
    pub master: Redis,
    pub replica: Redis,
    pub sentinels: Vec<SentinelProcess>,
}

impl Sentinels {
    pub(crate) const NAME: &str = "inferq-test";

    pub(crate) fn start() -> Self {
        let master = Redis::start_with(true);
        let replica = Redis::start_with_args(
            true,
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
        );
        eventually_blocking(Duration::from_secs(10), "the replica is in sync", || {
            redis_cli(replica.port, &["INFO", "replication"])
                .contains("master_link_status:up")
                .then_some(())
        });
        let sentinels: Vec<_> = (0..3).map(|_| sentinel(master.port)).collect();
        eventually_blocking(
            Duration::from_secs(20),
            "the sentinels see the replica and each other",
            || {
                sentinels
                    .iter()
                    .all(|s| {
                        let replicas = redis_cli(s.port, &["SENTINEL", "REPLICAS", Self::NAME]);
                        let peers = redis_cli(s.port, &["SENTINEL", "SENTINELS", Self::NAME]);
                        replicas.contains(&replica.port.to_string())
                            && peers.matches("runid").count() >= 2
                    })
                    .then_some(())
            },
        );
        Self {
            master,
            replica,
            sentinels,
        }
    }

    /// `INFERQ_REDIS_SENTINELS`'s value.
    pub(crate) fn urls(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the master the sentinels name now.
    pub(crate) fn master_port(&self) -> u16 {
        let reply = redis_cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::NAME],
        );
        reply
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A sentinel monitoring the master at `master_port` as [`Sentinels::NAME`].
pub(crate) fn sentinel(master_port: u16) -> SentinelProcess {
    let port = free_port();
    let dir =
        std::env::temp_dir().join(format!("inferq-sentinel-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "bind 127.0.0.1\nport {port}\ndir {}\n\
             sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n",
            dir.display(),
            name = Sentinels::NAME,
        ),
    )
    .unwrap();
    let child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/setup.sh installs it)");
    eventually_blocking(Duration::from_secs(10), "redis-sentinel starts", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).map(drop)
    });
    SentinelProcess { port, dir, child }
}

/// A Redis Cluster of three masters and three replicas (appendonly, fsync always; a node is
/// failed over after one second without an answer).
pub(crate) struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub(crate) fn start() -> Self {
        let nodes: Vec<Redis> = (0..6)
            .map(|_| {
                Redis::start_with_args(
                    true,
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-port".into(),
                        free_port().to_string(),
                        "--cluster-node-timeout".into(),
                        "1000".into(),
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(Redis::addr).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok();
        eventually_blocking(
            Duration::from_secs(20),
            "every master has a replica in sync",
            || {
                (cluster.masters().len() == 3
                    && cluster
                        .nodes
                        .iter()
                        .filter(|n| {
                            redis_cli(n.port, &["INFO", "replication"])
                                .contains("master_link_status:up")
                        })
                        .count()
                        == 3)
                    .then_some(())
            },
        );
        cluster
    }

    /// Waits until every live node says `cluster_state:ok`.
    pub(crate) fn wait_ok(&self) {
        eventually_blocking(Duration::from_secs(30), "the cluster is ok", || {
            self.nodes
                .iter()
                .filter(|n| n.is_running())
                .all(|n| redis_cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                .then_some(())
        });
    }

    /// The ports of the live masters.
    pub(crate) fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .filter(|n| redis_cli(n.port, &["ROLE"]).starts_with("master"))
            .map(|n| n.port)
            .collect()
    }

    /// The node serving `key` now (the master of its slot).
    pub(crate) fn master_of(&self, key: &str) -> usize {
        let slot: u64 = redis_cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap();
        self.nodes
            .iter()
            .position(|n| {
                n.is_running()
                    && redis_cli(n.port, &["ROLE"]).starts_with("master")
                    && owns(n.port, slot)
            })
            .expect("a live master serves every slot")
    }

    /// Moves 100 slots, those `redis-cli --cluster reshard --cluster-slots 100` takes first,
    /// from the master serving `tag` to another master; returns the other master's port.
    pub(crate) async fn reshard_from(&self, tag: &str) -> u16 {
        let from = self.nodes[self.master_of(tag)].port;
        let to = self.masters().into_iter().find(|p| *p != from).unwrap();
        let id = |port: u16| redis_cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let (from_id, to_id) = (id(from), id(to));
        let entry = format!("127.0.0.1:{from}");
        let moved = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(["--cluster", "reshard", &entry, "--cluster-from", &from_id])
                .args([
                    "--cluster-to",
                    &to_id,
                    "--cluster-slots",
                    "100",
                    "--cluster-yes",
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            moved.status.success(),
            "reshard: {}",
            String::from_utf8_lossy(&moved.stdout)
        );
        self.wait_ok();
        to
    }

    /// Every node's `CLUSTER INFO` counter `name`, summed.
    pub(crate) fn counter(&self, name: &str) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| {
                redis_cli(n.port, &["CLUSTER", "INFO"])
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map_or(0, |v| v.trim().parse().unwrap())
            })
            .sum()
    }

    /// `INFERQ_REDIS_CLUSTER`'s value: every node as a seed.
    pub(crate) fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(Redis::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Whether the node at `port` serves `slot` (its own `myself` line of `CLUSTER NODES`).
fn owns(port: u16, slot: u64) -> bool {
    redis_cli(port, &["CLUSTER", "NODES"])
        .lines()
        .find(|l| l.contains("myself"))
        .is_some_and(|l| {
            l.split_whitespace().skip(8).any(|range| {
                let mut ends = range.split('-').filter_map(|p| p.parse::<u64>().ok());
                match (ends.next(), ends.next()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            })
        })
}
