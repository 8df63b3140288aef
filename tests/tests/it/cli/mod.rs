//! The `inferq` command-line client, run as a process against the real API and workers: what it
//! prints, its exit statuses, and its spinner in a real terminal (tmux).

mod events;
mod jobs;
mod offline;
mod operations;
mod skew;
mod terminal;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::cli_binary;

pub(super) const DONE: Duration = Duration::from_secs(60);

/// Nothing listens on port 1.
pub(super) const UNREACHABLE: &str = "http://127.0.0.1:1";

/// How one run of the client ended.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) code: Option<i32>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Run {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }
}

/// Runs `inferq args…` against the API at `base`, without an API key, stdout and stderr piped
/// (so never a terminal).
pub(super) async fn inferq(base: &str, args: &[&str]) -> Run {
    run_cli(base, None, args).await
}

/// Runs `inferq args…` against the API at `base`, with `key` (or no key) in `INFERQ_API_KEY`.
pub(super) async fn run_cli(base: &str, key: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(cli_binary());
    cmd.args(args).env("INFERQ_URL", base);
    match key {
        Some(k) => cmd.env("INFERQ_API_KEY", k),
        None => cmd.env_remove("INFERQ_API_KEY"),
    };
    let child = cmd.stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(DONE, child)
        .await
        .unwrap_or_else(|_| panic!("inferq {args:?} did not finish"))
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `inferq args…` with the API key `key` in `INFERQ_API_KEY`.
pub(super) async fn inferq_with_key(base: &str, key: &str, args: &[&str]) -> Run {
    run_cli(base, Some(key), args).await
}
