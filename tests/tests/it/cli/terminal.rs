//! `inferq wait` in a real terminal (a private tmux server): a live spinner with the job's
//! status, its place in the queue and the time waited, cleared once the record is printed.

use std::time::Duration;

use super::DONE;
use crate::support::{cli_binary, eventually_every, slow_job, spawn_app, test_models};

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str, width: u16, height: u16) -> Self {
        let version = std::process::Command::new("tmux").arg("-V").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "tmux is not installed: this test runs `inferq wait` in a terminal under tmux \
             (scripts/setup.sh installs it: apt-get install tmux)"
        );
        let tmux = Self {
            socket: format!("inferq-test-{}", uuid::Uuid::new_v4().simple()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let ok = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "cli",
                "-x",
                &w,
                "-y",
                &h,
                command,
            ])
            .status
            .success();
        assert!(ok, "tmux new-session failed");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap()
    }

    /// The visible screen, without trailing blank lines.
    fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "cli"]);
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[tokio::test]
async fn wait_shows_a_live_spinner_in_a_terminal() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["slow"]).await;
    // Two jobs ahead of it on the worker's one thread: ours waits ~1.4 s, then runs ~0.7 s.
    for x in [1.0, 2.0] {
        app.submit(&slow_job(x)).await;
    }
    let id = app.submit(&slow_job(41.0)).await;

    let command = format!(
        "env -u INFERQ_API_KEY INFERQ_URL='{}' '{}' wait {id}; echo \"[exit $?]\"; sleep 600",
        app.base,
        cli_binary().display()
    );
    let tmux = Tmux::start(&command, 100, 20);
    let spinner_line = format!("job {id}");
    let mut spinner_screens: Vec<String> = Vec::new();
    // Every spinner line seen on the way, until the command has exited.
    let last = eventually_every(
        Duration::from_millis(150),
        DONE,
        "inferq wait finishes",
        async || {
            let screen = tmux.screen();
            if screen.contains("[exit ") {
                return Ok(screen);
            }
            if let Some(line) = screen.lines().find(|l| l.contains(&spinner_line))
                && spinner_screens.last().is_none_or(|prev| prev != line)
            {
                spinner_screens.push(line.to_owned());
            }
            Err(screen)
        },
    )
    .await;

    assert!(
        spinner_screens.len() >= 3,
        "the spinner line never advanced: {spinner_screens:?}"
    );
    assert!(
        spinner_screens.iter().all(|l| l.contains("waited ")),
        "{spinner_screens:?}"
    );
    assert!(
        spinner_screens
            .iter()
            .any(|l| l.contains("queued") || l.contains("running")),
        "the job's status was never shown: {spinner_screens:?}"
    );
    // While it waits behind the two others, its place in the queue.
    assert!(
        spinner_screens
            .iter()
            .any(|l| l.contains("queued (1 ahead") || l.contains("queued (0 ahead")),
        "the queue position was never shown: {spinner_screens:?}"
    );
    let waited: Vec<&str> = spinner_screens
        .iter()
        .filter_map(|l| l.split("waited ").nth(1))
        .collect();
    assert!(
        waited.first() != waited.last(),
        "the time waited never changed: {spinner_screens:?}"
    );
    // The spinner is cleared; the record is what stays.
    assert!(last.contains(&format!("job {id}  succeeded")), "{last}");
    assert!(last.contains("output    y  FP32 [1, 1]  [42"), "{last}");
    assert!(last.contains("[exit 0]"), "{last}");
    assert!(!last.contains("waited "), "{last}");
}
