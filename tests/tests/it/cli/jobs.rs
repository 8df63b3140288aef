//! `inferq submit`, `status`, `wait`, `cancel` and `models`: what they print of the server's
//! answers, and exit status 1 for a job that failed or was cancelled.

use std::path::Path;

use serde_json::json;

use super::{DONE, Run, inferq};
use crate::support::{assert_close, linear_expected, linear_job, slow_job, spawn_app, test_models};

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
