//! The `inferq` command-line client, run as a process against the real API and workers: what it
//! prints, its exit statuses, and its spinner in a real terminal (tmux).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const DONE: Duration = Duration::from_secs(60);
/// Nothing listens on port 1.
const UNREACHABLE: &str = "http://127.0.0.1:1";

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

/// How one run of the client ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }
}

/// Runs `inferq args…` against the API at `base`, without an API key, stdout and stderr piped
/// (so never a terminal).
async fn inferq(base: &str, args: &[&str]) -> Run {
    run_cli(base, None, args).await
}

/// Runs `inferq args…` against the API at `base`, with `key` (or no key) in `INFERQ_API_KEY`.
async fn run_cli(base: &str, key: Option<&str>, args: &[&str]) -> Run {
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

/// A `.npy` file as `numpy.save` writes one: magic, version 1.0, the header dict padded with
/// spaces to a multiple of 64 bytes and ended by a newline, then little-endian f4 data.
fn write_npy(path: &Path, rows: &[[f32; 4]]) {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 4), }}",
        rows.len()
    );
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for x in rows.iter().flatten() {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn assert_linear_record(run: &Run, rows: &[[f32; 4]]) {
    assert_eq!(run.code, Some(0), "{run:?}");
    let record = run.json();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["model"], "linear");
    let out = &record["result"]["outputs"][0];
    assert_eq!(out["name"], "y");
    assert_eq!(out["shape"], json!([rows.len(), 3]));
    assert_close(&out["data"], &linear_expected(rows), 1e-5);
}

#[tokio::test]
async fn submit_wait_returns_linear_results_from_inline_json_and_npy() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;

    // Inline JSON, a bare nested array: shape [2, 4] from the nesting, FP32 from the model.
    let rows = [[1.0, 2.0, 3.0, 4.0], [-1.5, 0.25, 8.0, -2.0]];
    let inline = "x=[[1, 2, 3, 4], [-1.5, 0.25, 8, -2]]";
    let run = inferq(
        &app.base,
        &["submit", "linear", "--input", inline, "--wait", "--json"],
    )
    .await;
    assert_linear_record(&run, &rows);

    // A .npy file.
    let rows = [[0.5, -1.0, 2.0, 0.0], [3.0, 0.125, -4.0, 1.0], [0.0; 4]];
    let npy = app.redis.dir.join("x.npy");
    write_npy(&npy, &rows);
    let input = format!("x={}", npy.display());
    let run = inferq(
        &app.base,
        &["submit", "linear", "-i", &input, "--wait", "--json"],
    )
    .await;
    assert_linear_record(&run, &rows);

    // A JSON file holding a tensor object, and the human-readable record.
    let file = app.redis.dir.join("x.json");
    std::fs::write(
        &file,
        r#"{"shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}"#,
    )
    .unwrap();
    let input = format!("x={}", file.display());
    let run = inferq(&app.base, &["submit", "linear", "-i", &input, "--wait"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("  succeeded\n"), "{run:?}");
    assert!(
        run.stdout.contains("output    y  FP32 [1, 3]  ["),
        "{run:?}"
    );
    assert!(run.stderr.is_empty(), "no spinner off a terminal: {run:?}");

    // Without --wait: the 202 body, verbatim; --priority reaches the job.
    let run = inferq(
        &app.base,
        &[
            "submit",
            "linear",
            "-i",
            inline,
            "--priority",
            "8",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let accepted = run.json();
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().unwrap();
    assert_eq!(accepted["status_url"], format!("/status/{id}"));
    let record = app.wait_done(id, DONE).await;
    assert_eq!(record["priority"], 8, "{record}");

    // A priority outside 0 to 9 is a usage error, caught before any request.
    let run = inferq(
        &app.base,
        &["submit", "linear", "-i", inline, "--priority", "10"],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("--priority"), "{run:?}");
}

#[tokio::test]
async fn status_cancel_and_models_print_the_servers_answers() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let rows = [[1.0, 0.0, -1.0, 2.0]];
    let id = app.submit(&linear_job(&rows)).await;
    app.wait_done(&id, DONE).await;

    let run = inferq(&app.base, &["status", &id, "--json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let record = run.json();
    let mut keys: Vec<&str> = record
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "created_at",
            "error",
            "finished_at",
            "id",
            "model",
            "priority",
            "result",
            "started_at",
            "status",
            "version"
        ]
    );
    assert_eq!(record["id"], id);
    assert_eq!(record["status"], "succeeded");
    assert!(record["error"].is_null());
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&rows),
        1e-5,
    );

    let run = inferq(&app.base, &["status", &id]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.starts_with(&format!("job {id}  succeeded\n")),
        "{run:?}"
    );

    // Cancelling a finished job: the server's 409 message, exit 1.
    let run = inferq(&app.base, &["cancel", &id]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr
            .contains("job is already succeeded (job_finished)"),
        "{run:?}"
    );

    // An unknown job: the server's 404 message, exit 1.
    let unknown = uuid::Uuid::new_v4().to_string();
    let run = inferq(&app.base, &["status", &unknown]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("job_not_found"), "{run:?}");

    let run = inferq(&app.base, &["models"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let mut lines = run.stdout.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("NAME"), "{run:?}");
    let linear = lines
        .find(|l| l.starts_with("linear "))
        .unwrap_or_else(|| panic!("no linear row: {run:?}"));
    assert!(linear.contains("x FP32 [-1, 4]"), "{linear}");
    assert!(linear.contains("y FP32 [-1, 3]"), "{linear}");

    let run = inferq(&app.base, &["models", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.json()["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "linear" && m["workers"] == 1),
        "{run:?}"
    );
}

#[tokio::test]
async fn workers_queues_and_dead_letters_from_the_command_line() {
    let app = spawn_app().await;
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let id = app.submit(&linear_job(&[[1.0, 2.0, 3.0, 4.0]])).await;
    app.wait_done(&id, DONE).await;

    // Workers publish their description every 2 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let run = inferq(&app.base, &["workers", "--json"]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let body = run.json();
        if body["workers"][0]["jobs_succeeded"] == 1 {
            break body;
        }
        assert!(Instant::now() < deadline, "{run:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(workers["workers"][0]["id"], w.id.as_str());
    let run = inferq(&app.base, &["workers"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let mut lines = run.stdout.lines();
    assert!(lines.next().unwrap().starts_with("ID "), "{run:?}");
    let row = lines.next().unwrap();
    assert!(row.starts_with(&w.id), "{run:?}");
    assert!(row.contains(" linear ") && row.contains(" 0/2 "), "{run:?}");

    let run = inferq(&app.base, &["queues", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let queues = run.json();
    assert_eq!(queues["queues"]["linear"]["depth"], 0, "{run:?}");
    assert_eq!(queues["queues"]["linear"]["workers"], 1, "{run:?}");
    let run = inferq(&app.base, &["queues"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("MODEL "), "{run:?}");
    assert!(run.stdout.contains("\ndead letters: 0\n"), "{run:?}");

    // A queue entry no worker can read becomes a dead letter.
    let mut conn = app.redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(format!("{{{}}}:q:linear", app.namespace))
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let run = inferq(&app.base, &["dead", "list", "--json"]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let body = run.json();
        if body["dead_letters"].as_array().unwrap().len() == 1 {
            break body;
        }
        assert!(Instant::now() < deadline, "{run:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let dead_id = dead["dead_letters"][0]["dead_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = inferq(&app.base, &["dead", "list"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains("malformed_entry"),
        "{run:?}"
    );
    assert!(run.stdout.contains(" TENANT "), "{run:?}");
    // Its job is unknown, so it belongs to no tenant: a tenant's list does not show it.
    let run = inferq(
        &app.base,
        &["dead", "list", "--tenant", "default", "--json"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["dead_letters"], serde_json::json!([]), "{run:?}");
    // An unreadable entry cannot run again: the server's 409, exit 1.
    let run = inferq(&app.base, &["dead", "retry", &dead_id]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("not_retryable"), "{run:?}");
    let run = inferq(&app.base, &["dead", "delete", &dead_id]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, format!("dead letter {dead_id} deleted\n"));
    let run = inferq(&app.base, &["dead", "list"]).await;
    assert_eq!(run.stdout, "no dead letters\n", "{run:?}");
    let run = inferq(&app.base, &["dead", "delete", &dead_id]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("dead_letter_not_found"), "{run:?}");
    let run = inferq(&app.base, &["dead", "list", "--limit", "0"]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
}

#[tokio::test]
async fn failed_and_cancelled_jobs_exit_1() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["slow"]).await;
    // The worker's one thread runs `first` (~0.7 s), then `filler` (~0.7 s): the jobs behind
    // them stay queued meanwhile.
    let first = app.submit(&slow_job(1.0)).await;
    app.wait_status(&first, "running", DONE).await;
    let _filler = app.submit(&slow_job(2.0)).await;
    let queued = app.submit(&slow_job(3.0)).await;

    let run = inferq(&app.base, &["cancel", &queued, "--json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["status"], "cancelled", "{run:?}");
    for args in [vec!["status", &queued], vec!["wait", &queued]] {
        let run = inferq(&app.base, &args).await;
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(run.stdout.contains("  cancelled\n"), "{run:?}");
    }

    // Behind `filler`, it cannot start within 1 ms: it fails with deadline_exceeded.
    let run = inferq(
        &app.base,
        &[
            "submit",
            "slow",
            "-i",
            "x=[[4]]",
            "--timeout-ms",
            "1",
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let record = run.json();
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "deadline_exceeded", "{record}");
    let failed = record["id"].as_str().unwrap();
    let run = inferq(&app.base, &["status", failed]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains("error     deadline_exceeded: "),
        "{run:?}"
    );
}

#[tokio::test]
async fn unreachable_server_exits_3() {
    let id = uuid::Uuid::new_v4().to_string();
    for args in [
        vec!["models"],
        vec!["status", &id],
        vec!["submit", "linear", "-i", "x=[[1, 2, 3, 4]]", "--wait"],
    ] {
        let run = inferq(UNREACHABLE, &args).await;
        assert_eq!(run.code, Some(3), "{args:?}: {run:?}");
        assert!(
            run.stderr
                .contains("cannot reach the inferq API at http://127.0.0.1:1"),
            "{run:?}"
        );
    }
}

/// A server that answers every request `401` and hands back the request's head, to show the key
/// is sent as a bearer token, and never printed.
#[tokio::test]
async fn api_key_is_sent_as_a_bearer_token_and_401_exits_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed mid-request");
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"error":{"code":"unauthorized","message":"unknown API key"}}"#;
        let reply = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).unwrap();
        String::from_utf8(head).unwrap()
    });
    let key = "s3cret-key";
    let out = tokio::process::Command::new(cli_binary())
        .args(["models"])
        .env("INFERQ_URL", &base)
        .env("INFERQ_API_KEY", key)
        .output()
        .await
        .unwrap();
    let head = server.join().unwrap().to_ascii_lowercase();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        head.contains(&format!("authorization: bearer {key}")),
        "{head}"
    );
    assert!(stderr.contains("unknown API key"), "{stderr}");
    assert!(!stderr.contains(key), "{stderr}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = std::env::temp_dir().join(format!("inferq-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_npy = dir.join("bad.npy");
    std::fs::write(&bad_npy, b"\x93NUMPY\x01\x00\x10\x00{'descr': '>f4'").unwrap();
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, "[[1, 2], [3]]").unwrap();
    let npy_arg = format!("x={}", bad_npy.display());
    let json_arg = format!("x={}", bad_json.display());
    let cases: [&[&str]; 9] = [
        &[],
        &["frobnicate"],
        &["submit", "linear"],
        &["submit", "linear", "--input", "x"],
        &["submit", "linear", "--input", "x=/no/such/file.npy"],
        &["submit", "linear", "--input", &npy_arg],
        &["submit", "linear", "--input", &json_arg],
        &["status", "not-a-job-id"],
        &["--url", "ftp://example", "models"],
    ];
    for args in cases {
        // Nothing may be sent: an attempt would exit 3 against this URL.
        let run = inferq(UNREACHABLE, args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: {run:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let run = inferq(UNREACHABLE, &["wait", "--help"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("Usage: inferq wait"), "{run:?}");
}

#[tokio::test]
async fn completions_print_a_script() {
    let run = inferq(UNREACHABLE, &["completions", "bash"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("_inferq()"), "{run:?}");
    assert!(run.stdout.contains("complete -F _inferq"), "{run:?}");
    for shell in ["zsh", "fish"] {
        let run = inferq(UNREACHABLE, &["completions", shell]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(run.stdout.contains("inferq"), "{run:?}");
    }
}

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
    let deadline = Instant::now() + DONE;
    let last = loop {
        let screen = tmux.screen();
        if screen.contains("[exit ") {
            break screen;
        }
        if let Some(line) = screen.lines().find(|l| l.contains(&spinner_line))
            && spinner_screens.last().is_none_or(|prev| prev != line)
        {
            spinner_screens.push(line.to_owned());
        }
        assert!(
            Instant::now() < deadline,
            "inferq wait did not finish: {screen}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    };

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

/// Runs `inferq args…` with the API key `key` in `INFERQ_API_KEY`.
async fn inferq_with_key(base: &str, key: &str, args: &[&str]) -> Run {
    run_cli(base, Some(key), args).await
}

#[tokio::test]
async fn keys_and_speech_from_the_command_line() {
    const ADMIN: &str = "cli-test-admin-key-0123456789abcdef-0123456789";
    let app = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await;
    let _w = app.worker(
        &repo_root().join("models"),
        &[("INFERQ_MODELS", "silero_vad")],
    );

    // Keys: made once, listed without the secret, refused once revoked.
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &[
            "keys",
            "create",
            "--tenant",
            "blue",
            "--scopes",
            "submit,read",
            "--name",
            "cli",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let made = run.json();
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("iqk_"), "{made}");
    let run = inferq_with_key(&app.base, ADMIN, &["keys", "list"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("ID "), "{run:?}");
    assert!(
        run.stdout.contains(&id) && run.stdout.contains("submit,read"),
        "{run:?}"
    );
    assert!(!run.stdout.contains(&key), "{run:?}");
    let run = inferq_with_key(&app.base, &key, &["models"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    // No admin scope: the server's 403, exit 3.
    let run = inferq_with_key(&app.base, &key, &["workers"]).await;
    assert_eq!(run.code, Some(3), "{run:?}");
    let run = inferq_with_key(&app.base, ADMIN, &["keys", "revoke", &id]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), format!("key {id} revoked\n").as_str())
    );
    let run = inferq_with_key(&app.base, &key, &["models"]).await;
    assert_eq!(run.code, Some(3), "{run:?}");

    // Speech: the file in, the segments out, as the pipeline computes them.
    let deadline = Instant::now() + DONE;
    loop {
        let run = inferq_with_key(&app.base, ADMIN, &["models", "--json"]).await;
        let served = run.json()["models"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["name"] == "silero_vad" && m["workers"] == 1)
        });
        if served {
            break;
        }
        assert!(Instant::now() < deadline, "{run:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audio = repo_root().join("tests/audio/speech.wav");
    let reference: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("tests/audio/speech.ref.json")).unwrap(),
    )
    .unwrap();
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &["speech", audio.to_str().unwrap(), "--wait", "--json"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let record = run.json();
    assert_eq!(record["pipeline"], "speech_segments", "{record}");
    assert_eq!(record["result"], reference, "{record}");
    let run = inferq_with_key(&app.base, ADMIN, &["speech", audio.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("job "), "{run:?}");
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &["speech", audio.to_str().unwrap(), "--parameters", "[1]"],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &[
            "speech",
            audio.to_str().unwrap(),
            "--parameters",
            "{\"threshold\": 7}",
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("invalid_parameter"), "{run:?}");
}
