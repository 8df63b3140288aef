//! Where the suite finds what it runs: the repository, the test models, the built binaries, the
//! test venv, the log directory, and free ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Where the suite's processes write their log lines (every worker the harness starts, and
/// the in-process APIs, through one subscriber of this test process), kept after each test so
/// that `logs::no_secret_in_any_log_line`, run after the suite (scripts/test.sh), can read
/// them all. scripts/test.sh empties it before the suite.
pub(crate) fn log_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inferq-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn test_models() -> PathBuf {
    repo_root().join("tests/models")
}

/// A program of the test venv (`.venv-test`, made by scripts/setup.sh: the Triton client,
/// openapi-spec-validator, schemathesis, Playwright).
pub(crate) fn test_venv(bin: &str) -> PathBuf {
    let path = repo_root().join(".venv-test/bin").join(bin);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (it makes the test venv)",
        path.display()
    );
    path
}

/// A port of 127.0.0.1 that was free a moment ago, for a process that binds it itself.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn worker_binary() -> PathBuf {
    // target/<profile>/deps/it-<hash> → target/<profile>/inferq-worker
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("inferq-worker");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// `target/<profile>/inferq-api`, built with the worker.
pub(crate) fn api_binary() -> PathBuf {
    worker_binary().with_file_name("inferq-api")
}

/// `target/<profile>/inferq`, built with the other binaries.
pub(crate) fn cli_binary() -> PathBuf {
    let path = worker_binary().with_file_name("inferq");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}
