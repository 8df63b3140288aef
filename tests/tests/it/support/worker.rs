//! A worker process (the real `inferq-worker` binary), killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{eventually_blocking, log_dir, worker_binary};

/// A worker process, killed on drop.
pub(crate) struct Worker {
    pub child: Child,
    pub id: String,
    /// Where its log lines (stdout) go.
    pub log: PathBuf,
}

impl Worker {
    /// Starts a worker process serving `models_dir`, with `redis` naming where Redis is (the
    /// settings of one connection mode) and `namespace` its key prefix; `env` adds or
    /// overrides settings.
    pub(crate) fn start_on(
        redis: &[(&str, &str)],
        namespace: &str,
        models_dir: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let id = format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut cmd = Command::new(worker_binary());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(redis.iter().copied())
            .env("INFERQ_NAMESPACE", namespace)
            .env("INFERQ_MODELS_DIR", models_dir)
            .env("INFERQ_WORKER_ID", &id)
            .env("INFERQ_THREADS", "2")
            .env("INFERQ_LEASE_MS", "2000")
            .env("ORT_DYLIB_PATH", env!("ORT_DYLIB_PATH"))
            .env(
                "RUST_LOG",
                std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let log = log_dir().join(format!("{namespace}-{id}.log"));
        cmd.stdout(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker {
            child: cmd.spawn().unwrap(),
            id,
            log,
        }
    }

    /// Everything the worker logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let what = format!("worker {} exits", self.id);
        let child = &mut self.child;
        eventually_blocking(timeout, what, || {
            child.try_wait().unwrap().map(|status| status.code())
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
