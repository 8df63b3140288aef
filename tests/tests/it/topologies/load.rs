//! A steady stream of submissions through a failover: each job is submitted with an
//! `Idempotency-Key` and retried on `503` (as a client should), and the jobs that got `202`
//! are then checked to have succeeded with the right result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    ApiProcess, Worker, assert_close, eventually, linear_expected, linear_job, test_models,
};

/// What a load run saw.
pub(super) struct Accepted {
    /// Each job that got `202`: its id, its row, and when it was accepted.
    pub(super) jobs: Vec<(String, [f32; 4], Instant)>,
    /// `503` answers (retried with the same key).
    pub(super) unavailable: usize,
}

impl Accepted {
    /// How many jobs were accepted after `t`.
    pub(super) fn after(&self, t: Instant) -> usize {
        self.jobs.iter().filter(|(_, _, at)| *at > t).count()
    }
}

/// Submits `linear` jobs one after another to `base` until `stop` is set, each retried on
/// `503` (with the same `Idempotency-Key`) until it is accepted or `stop` is set.
pub(super) async fn steady(base: String, stop: Arc<AtomicBool>) -> Accepted {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut accepted = Accepted {
        jobs: Vec::new(),
        unavailable: 0,
    };
    let mut i = 0u32;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let row = [i as f32, 1.0, -2.0, 0.5];
        let key = format!("load-{i}");
        while !stop.load(Ordering::SeqCst) {
            let sent = http
                .post(format!("{base}/jobs"))
                .header("Idempotency-Key", &key)
                .json(&linear_job(&[row]))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 202 || r.status() == 200 => {
                    let v: Value = r.json().await.unwrap();
                    accepted
                        .jobs
                        .push((v["id"].as_str().unwrap().to_owned(), row, Instant::now()));
                    break;
                }
                Ok(r) if r.status() == 503 => {
                    assert!(
                        r.headers().contains_key("retry-after"),
                        "503 without Retry-After"
                    );
                    accepted.unavailable += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(r) => panic!(
                    "submission answered {}: {}",
                    r.status(),
                    r.text().await.unwrap()
                ),
                // The API answers within its Redis timeout; a transport error is not expected.
                Err(e) => panic!("submission failed: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    accepted
}

/// Asserts that every accepted job, once, ends `succeeded` with its row's result, within
/// `timeout`; the ids are distinct (a retried submission made no second job).
pub(super) async fn all_succeed(base: &str, accepted: &Accepted, timeout: Duration) {
    let http = reqwest::Client::new();
    let mut ids: Vec<&str> = accepted.jobs.iter().map(|(id, ..)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        accepted.jobs.len(),
        "an idempotent retry made a second job"
    );
    for (id, row, _) in &accepted.jobs {
        let url = format!("{base}/status/{id}");
        let status = eventually(timeout, format!("job {id} succeeds"), async || {
            let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            match v["status"].as_str()? {
                "succeeded" => Some(Ok(v)),
                "failed" | "cancelled" | "dead" => Some(Err(v)),
                _ => None,
            }
        })
        .await;
        let status = status.unwrap_or_else(|v| panic!("accepted job {id} ended {v}"));
        assert_close(
            &status["result"]["outputs"][0]["data"],
            &linear_expected(&[*row]),
            1e-5,
        );
    }
}

/// An API and a `linear` worker on one Redis topology, with [`steady`] load running.
pub(super) struct Run {
    api: ApiProcess,
    _worker: Worker,
    running: tokio::task::JoinHandle<Accepted>,
    stop: Arc<AtomicBool>,
}

impl Run {
    /// Starts the API (`api_env` added to its settings) and a worker on the Redis `redis`
    /// names, in namespace `ns`, then the load; returns after two seconds of it.
    pub(super) async fn start(redis: &[(&str, &str)], ns: &str, api_env: &[(&str, &str)]) -> Self {
        let api = ApiProcess::start_on(redis, ns, api_env).await;
        let worker = Worker::start_on(redis, ns, &test_models(), &[("INFERQ_MODELS", "linear")]);
        api.client(None).wait_models(&["linear"]).await;
        let stop = Arc::new(AtomicBool::new(false));
        let running = tokio::spawn(steady(api.base.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        Self {
            api,
            _worker: worker,
            running,
            stop,
        }
    }

    /// After `what` (a failover, a migration) settled: lets the load run three more seconds,
    /// stops it, and checks what a client relies on: submissions were accepted after it (the
    /// API followed the new topology), and every job that got `202` succeeds with its result.
    pub(super) async fn finish(self, what: &str) {
        let settled = Instant::now();
        // A loaded machine can take a while past `settled` to serve writes again (a replica's
        // first sync, the API finding the new master): until the API accepts a job, up to
        // 30 s, then three seconds more of the load.
        let client = self.api.client(None);
        eventually(
            Duration::from_secs(30),
            "the API accepts jobs again",
            async || {
                let (status, _) = client.post_json("/jobs", &linear_job(&[[1.0; 4]])).await;
                (status == 202).then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        self.stop.store(true, Ordering::SeqCst);
        let accepted = self.running.await.unwrap();
        eprintln!(
            "accepted {} jobs ({} after the {what}), {} answers were 503",
            accepted.jobs.len(),
            accepted.after(settled),
            accepted.unavailable
        );
        assert!(
            accepted.jobs.len() > 20,
            "too few jobs accepted to show anything: {}",
            accepted.jobs.len()
        );
        assert!(
            accepted.after(settled) > 0,
            "no job was accepted after the {what} ({} answers were 503)",
            accepted.unavailable
        );
        all_succeed(&self.api.base, &accepted, Duration::from_secs(60)).await;
    }
}
