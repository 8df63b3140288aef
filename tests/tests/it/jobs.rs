//! The job path end to end: submit → Redis → worker → ONNX Runtime → status.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    assert_close, eventually, linear_expected, linear_job, repo_root, spawn_app, test_models,
};

const DONE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn linear_model_result_matches_the_formula() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[]);
    app.wait_models(&["linear"]).await;

    let rows = [
        [1.0, 2.0, 3.0, 4.0],
        [0.0, 0.0, 0.0, 0.0],
        [-1.5, 0.25, 8.0, -2.0],
    ];
    let id = app.submit(&linear_job(&rows)).await;
    let record = app.wait_done(&id, DONE).await;

    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["id"], id);
    assert_eq!(record["model"], "linear");
    assert_eq!(record["attempts"], 1);
    assert!(record["error"].is_null());
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(
            record[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "{field}: {record}"
        );
    }
    let out = &record["result"]["outputs"][0];
    assert_eq!(out["name"], "y");
    assert_eq!(out["datatype"], "FP32");
    assert_eq!(out["shape"], json!([3, 3]));
    assert_close(&out["data"], &linear_expected(&rows), 1e-5);
}

#[tokio::test]
async fn every_datatype_round_trips_including_scalars() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[]);
    app.wait_models(&["dtypes"]).await;

    let id = app
        .submit(&json!({
            "model": "dtypes",
            "inputs": [
                {"name": "f64", "shape": [2, 2], "datatype": "FP64", "data": [[0.1, -2.5], [1e300, 3.0]]},
                {"name": "i32", "shape": [2, 2], "datatype": "INT32", "data": [1, -1, 2147483646, 0]},
                {"name": "i64s", "shape": [], "datatype": "INT64", "data": [3074457345618258602i64]},
                {"name": "flag", "shape": [2, 2], "datatype": "BOOL", "data": [true, false, false, true]}
            ],
            "outputs": [{"name": "i64_out"}, {"name": "f64_out"}, {"name": "i32_out"}, {"name": "flag_out"}]
        }))
        .await;
    let record = app.wait_done(&id, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let outputs = record["result"]["outputs"].as_array().unwrap();
    // Requested order is kept.
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["i64_out", "f64_out", "i32_out", "flag_out"]);
    assert_eq!(
        outputs[0],
        json!({"name": "i64_out", "shape": [], "datatype": "INT64", "data": [9223372036854775806i64]})
    );
    assert_eq!(outputs[1]["datatype"], "FP64");
    assert_eq!(outputs[1]["data"], json!([0.2, -5.0, 2e300, 6.0]));
    assert_eq!(
        outputs[2],
        json!({"name": "i32_out", "shape": [2, 2], "datatype": "INT32", "data": [2, 0, 2147483647, 1]})
    );
    assert_eq!(
        outputs[3],
        json!({"name": "flag_out", "shape": [2, 2], "datatype": "BOOL", "data": [false, true, true, false]})
    );
}

#[tokio::test]
async fn silero_vad_returns_a_probability_and_its_state() {
    let models = repo_root().join("models");
    assert!(
        models.join("silero_vad/model.onnx").exists(),
        "models/silero_vad/model.onnx is missing: run scripts/setup.sh"
    );
    let app = spawn_app().await;
    let _w = app.worker(&models, &[("INFERQ_MODELS", "silero_vad")]);
    app.wait_models(&["silero_vad"]).await;

    let (_, listing) = app.get("/models").await;
    let silero = &listing["models"][0];
    assert_eq!(silero["name"], "silero_vad");
    assert_eq!(
        silero["batching"], false,
        "the state input carries the batch on axis 1"
    );
    assert_eq!(
        silero["inputs"],
        json!([
            {"name": "input", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "state", "datatype": "FP32", "shape": [2, -1, 128]},
            {"name": "sr", "datatype": "INT64", "shape": []}
        ])
    );

    // 512 samples of a 440 Hz tone and of silence, at 16 kHz.
    let tone: Vec<f32> = (0..512)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin())
        .collect();

    // Reference values for exactly these inputs (zero state, sr 16000), computed once with the
    // onnxruntime Python package 1.31.1 (the library version the worker loads) by
    // scripts/silero_reference.py, which rebuilds the same f32 tone bit for bit and prints them.
    // `stateN` ([2, 1, 128]) is checked through its sum, its sum of absolute values and the
    // elements at STATE_INDICES (flat, row-major). Thread count and graph optimization change
    // these by a few 1e-6 at most, hence the absolute tolerances.
    struct Reference {
        output: f64,
        state_sum: f64,
        state_abs_sum: f64,
        state_at: [f64; 11],
    }
    const STATE_INDICES: [usize; 11] = [0, 40, 89, 116, 128, 168, 171, 188, 217, 244, 253];
    const TONE: Reference = Reference {
        output: 0.0033158958,
        state_sum: 12.5680466,
        state_abs_sum: 69.7720392,
        state_at: [
            -0.761594176,
            8.47577976e-05,
            -0.757447958,
            0.756943107,
            -1.0,
            8.47578049e-05,
            1.0,
            0.0,
            -0.990200758,
            0.989017606,
            1.0,
        ],
    };
    const SILENCE: Reference = Reference {
        output: 0.000592201948,
        state_sum: 15.1784636,
        state_abs_sum: 70.8871588,
        state_at: [
            -0.761594176,
            0.758088768,
            0.761594176,
            0.761594176,
            -1.0,
            0.991705954,
            0.00384095311,
            0.332074165,
            1.0,
            1.0,
            -1.0,
        ],
    };
    let close = |what: &str, got: f64, want: f64, tol: f64| {
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} (absolute tolerance {tol})"
        );
    };

    for (label, samples, want) in [("tone", tone, TONE), ("silence", vec![0.0; 512], SILENCE)] {
        let id = app
            .submit(&json!({
                "model": "silero_vad",
                "inputs": [
                    {"name": "input", "shape": [1, 512], "datatype": "FP32", "data": samples},
                    {"name": "state", "shape": [2, 1, 128], "datatype": "FP32", "data": vec![0.0; 256]},
                    {"name": "sr", "shape": [], "datatype": "INT64", "data": [16000]}
                ]
            }))
            .await;
        let record = app.wait_done(&id, DONE).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        let outputs = record["result"]["outputs"].as_array().unwrap();
        assert_eq!(outputs[0]["name"], "output");
        assert_eq!(outputs[0]["shape"], json!([1, 1]));
        let p = outputs[0]["data"][0].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "speech probability {p}");
        assert_eq!(outputs[1]["name"], "stateN");
        assert_eq!(outputs[1]["shape"], json!([2, 1, 128]));
        assert_eq!(outputs[1]["data"].as_array().unwrap().len(), 256);

        close(&format!("{label}: output"), p, want.output, 1e-4);
        let state: Vec<f64> = outputs[1]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let sum: f64 = state.iter().sum();
        let abs_sum: f64 = state.iter().map(|v| v.abs()).sum();
        close(
            &format!("{label}: sum of stateN"),
            sum,
            want.state_sum,
            1e-3,
        );
        close(
            &format!("{label}: sum of |stateN|"),
            abs_sum,
            want.state_abs_sum,
            1e-3,
        );
        for (&i, &w) in STATE_INDICES.iter().zip(&want.state_at) {
            close(&format!("{label}: stateN[{i}]"), state[i], w, 1e-4);
        }
    }

    // A chunk size the model cannot take fails the job with a clear error; the worker lives on.
    let id = app
        .submit(&json!({
            "model": "silero_vad",
            "inputs": [
                {"name": "input", "shape": [1, 16], "datatype": "FP32", "data": vec![0.0; 16]},
                {"name": "state", "shape": [2, 1, 128], "datatype": "FP32", "data": vec![0.0; 256]},
                {"name": "sr", "shape": [], "datatype": "INT64", "data": [16000]}
            ]
        }))
        .await;
    let record = app.wait_done(&id, DONE).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "inference_error");
    assert_eq!(record["attempts"], 1, "a permanent error is not retried");
    assert!(record["result"].is_null());
}

#[tokio::test]
async fn a_thousand_jobs_over_two_workers_all_succeed_with_their_own_results() {
    let app = spawn_app().await;
    let w1 = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    let w2 = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    // Both workers announce within the announce interval; give the second a moment to join.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Each job gets distinct inputs, and some carry several rows, so a mix-up shows.
    let jobs: Vec<Vec<[f32; 4]>> = (0..1000)
        .map(|i| {
            let f = i as f32;
            (0..1 + i % 3)
                .map(|r| [f, -f / 7.0, r as f32, 1.0])
                .collect()
        })
        .collect();
    let bodies: Vec<Value> = jobs.iter().map(|rows| linear_job(rows)).collect();
    let ids = app.submit_all(&bodies).await;

    let mut workers = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let record = app.wait_done(id, DONE).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        let out = &record["result"]["outputs"][0];
        assert_eq!(out["shape"], json!([jobs[i].len(), 3]));
        assert_close(&out["data"], &linear_expected(&jobs[i]), 1e-4);
        workers.insert(app.job_worker(id).await.unwrap());
    }
    assert!(
        workers.contains(&w1.id) && workers.contains(&w2.id),
        "workers used: {workers:?}"
    );
}

#[tokio::test]
async fn healthz_answers_promptly_while_workers_saturate_the_cpu() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    let job = json!({"model": "slow", "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]});
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(app.submit(&job).await);
    }
    // Wait until both inference threads are busy.
    eventually(DONE, "two jobs run", async || {
        let mut running = 0;
        for id in &ids {
            if app.get(&format!("/status/{id}")).await.1["status"] == "running" {
                running += 1;
            }
        }
        if running >= 2 {
            Ok(())
        } else {
            Err(format!("{running} running"))
        }
    })
    .await;
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let (status, body) = app.get("/healthz").await;
        worst = worst.max(t.elapsed());
        assert_eq!((status, body), (200, json!({"status": "ok"})));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Generous bound: the point is that inference never blocks the API, not a latency figure.
    assert!(
        worst < Duration::from_secs(1),
        "slowest /healthz took {worst:?}"
    );
    assert_eq!(app.get("/readyz").await, (200, json!({"status": "ready"})));
    let record = app.wait_done(&ids[0], DONE).await;
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["result"]["outputs"][0]["data"], json!([2.0]));
}
