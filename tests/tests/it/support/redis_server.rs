//! A private `redis-server` on a free port, in a directory of its own, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually_blocking, free_port};

/// A private redis-server, killed on drop.
pub(crate) struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    aof: bool,
    /// More `redis-server` arguments (replication, cluster mode).
    args: Vec<String>,
}

impl Redis {
    /// With `aof`, every write is appended and fsynced, as in docker-compose.yml.
    pub(crate) fn start_with(aof: bool) -> Self {
        Self::start_with_args(aof, Vec::new())
    }

    /// As [`Redis::start_with`], with more `redis-server` arguments.
    pub(crate) fn start_with_args(aof: bool, args: Vec<String>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("inferq-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port: free_port(),
            dir,
            child: None,
            aof,
            args,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&self.dir)
        .args(&self.args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (scripts/setup.sh installs it)");
        self.child = Some(child);
        eventually_blocking(Duration::from_secs(10), "redis-server starts", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).map(drop)
        });
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether it runs (it was not killed).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server abruptly (SIGKILL): no final save, like a crash.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory as a replica of the node at `port` (as an
    /// operator brings a failed master back after a failover).
    pub(crate) fn restart_as_replica_of(&mut self, port: u16) {
        self.args
            .extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
        self.restart();
    }

    /// Starts it again on the same port and directory (so the AOF is replayed).
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub(crate) async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
