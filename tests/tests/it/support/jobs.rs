//! The jobs tests submit, the committed test models' expected outputs, and bulk submission.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// Submits `jobs` 32 at a time through the API at `base` and returns their ids in order,
/// counting accepted jobs in `progress`. Owns its inputs, so it can run in a spawned task.
pub(crate) async fn submit_all(
    http: reqwest::Client,
    base: String,
    jobs: Vec<Value>,
    progress: Option<Arc<AtomicUsize>>,
) -> Vec<String> {
    let mut ids = vec![String::new(); jobs.len()];
    let mut set = tokio::task::JoinSet::new();
    let mut collect = |(i, id): (usize, String)| {
        ids[i] = id;
        if let Some(p) = &progress {
            p.fetch_add(1, Ordering::SeqCst);
        }
    };
    for (i, body) in jobs.into_iter().enumerate() {
        let (http, base) = (http.clone(), base.clone());
        set.spawn(async move {
            let r = http
                .post(format!("{base}/jobs"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            (i, v["id"].as_str().unwrap().to_owned())
        });
        if set.len() >= 32 {
            collect(set.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(r) = set.join_next().await {
        collect(r.unwrap());
    }
    ids
}

/// A `slow` model job (it sleeps ~0.7 s and answers `x + 1`).
pub(crate) fn slow_job(x: f32) -> Value {
    json!({"model": "slow", "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}]})
}

/// A `linear` model job on `rows`; its expected output is [`linear_expected`].
pub(crate) fn linear_job(rows: &[[f32; 4]]) -> Value {
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    json!({
        "model": "linear",
        "inputs": [{"name": "x", "shape": [rows.len(), 4], "datatype": "FP32", "data": data}]
    })
}

/// y = x·W + b with W[i][j] = 0.1·(3i + j + 1), b = [0.5, −0.5, 1.0]: the committed test model.
pub(crate) fn linear_expected(rows: &[[f32; 4]]) -> Vec<f64> {
    let b = [0.5, -0.5, 1.0];
    rows.iter()
        .flat_map(|x| {
            (0..3).map(move |j| {
                b[j] + (0..4)
                    .map(|i| f64::from(x[i]) * 0.1 * (3 * i + j + 1) as f64)
                    .sum::<f64>()
            })
        })
        .collect()
}

pub(crate) fn assert_close(got: &Value, want: &[f64], tol: f64) {
    let got: Vec<f64> = got
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {got}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "got {got:?}, want {want:?}"
        );
    }
}
