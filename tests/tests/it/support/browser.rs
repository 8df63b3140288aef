//! The dashboard's browser checks: a Playwright script of `tests/dashboard/` run with the test
//! venv's Python against Debian's headless Chromium, and where its screenshots go.

use std::path::PathBuf;
use std::time::Duration;

use super::{repo_root, test_venv};

/// Debian's Chromium (scripts/setup.sh installs it); `INFERQ_TEST_CHROMIUM` names another
/// Chromium or Chrome binary.
fn chromium() -> PathBuf {
    let path = std::env::var_os("INFERQ_TEST_CHROMIUM")
        .map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh --test (it installs Debian's chromium), or set \
         INFERQ_TEST_CHROMIUM to a Chromium binary",
        path.display()
    );
    path
}

/// `target/<name>`, beside the binaries the tests run (this binary is
/// `target/<profile>/deps/it-<hash>`).
pub(crate) fn screenshot_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join(name)
}

/// Runs `tests/dashboard/<script>` with `args` and the Chromium binary last; asserts that it
/// succeeded within three minutes and returns what it printed.
pub(crate) async fn run_check(script: &str, args: &[&str]) -> String {
    let run = tokio::process::Command::new(test_venv("python"))
        .arg(repo_root().join("tests/dashboard").join(script))
        .args(args)
        .arg(chromium())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser check did not finish in 180 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script}: {text}");
    text
}
