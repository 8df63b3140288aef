//! The README's run command as a newcomer meets it: `scripts/run.sh --once` (with the suite's
//! debug binaries, so it builds nothing) starts Redis, the API and two workers, makes a key
//! that can open the dashboard, and runs the speech pipeline on the recording spoken at setup
//! with the `inferq` CLI; and `scripts/setup.sh` installs for running only what running needs.

use std::process::Command;

use crate::support::{free_port, repo_root, worker_binary};

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.current_dir(repo_root()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_run_command_demos_a_recording_through_the_cli() {
    let bins = worker_binary().parent().unwrap().to_owned();
    let (ok, text) = run(Command::new("scripts/run.sh")
        .args(["--once", "--prebuilt"])
        .arg(&bins)
        .env("INFERQ_PORT", free_port().to_string())
        .env("INFERQ_REDIS_PORT", free_port().to_string())
        .env("RUST_LOG", "warn"));
    assert!(ok, "{text}");
    assert!(text.contains("scopes submit,read,admin"), "{text}");
    assert!(text.contains("demo job succeeded"), "{text}");
    assert!(text.contains("pipeline  speech_segments"), "{text}");
    // The recording holds three spoken passages between two long pauses (each passage may be
    // cut into more than one segment where the voice rests).
    let segments = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("segments"))
        .unwrap_or_else(|| panic!("no segments line: {text}"));
    let count: usize = segments.split_whitespace().next().unwrap().parse().unwrap();
    assert!((3..=8).contains(&count), "{segments}");
    assert!(
        !text.contains("cargo build"),
        "--prebuilt must build nothing: {text}"
    );
}

#[test]
fn setup_for_running_leaves_out_what_only_the_tests_need() {
    let (ok, run_text) = run(&mut Command::new("scripts/setup.sh"));
    assert!(ok, "{run_text}");
    let (ok, test_text) = run(Command::new("scripts/setup.sh").arg("--test"));
    assert!(ok, "{test_text}");
    // The test set names its venv (present or installed); the running set never touches it,
    // nor the browser, Prometheus, sox or the audio fixtures.
    assert!(test_text.contains(".venv-test"), "{test_text}");
    for only_tests in [
        ".venv-test",
        "chromium",
        "prometheus",
        "sox",
        "audio-fixtures",
    ] {
        assert!(!run_text.contains(only_tests), "{only_tests}: {run_text}");
    }
    assert!(run_text.contains("demo recording"), "{run_text}");
}
