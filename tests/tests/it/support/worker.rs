//! A worker process (the real `inferq-worker` binary), killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use super::eventually_blocking;

/// A worker process, killed on drop.
pub(crate) struct Worker {
    pub child: Child,
    pub id: String,
    /// Where its log lines (stdout) go.
    pub log: PathBuf,
}

impl Worker {
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
