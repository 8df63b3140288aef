//! The worker's probes for an orchestrator, on its metrics listener: `GET /livez` answers while
//! the process runs, whatever Redis does; `GET /readyz` is ready only while the worker serves
//! and Redis answers, `redis_unavailable` in an outage, and `draining` after SIGTERM while it
//! finishes the jobs it started.

use std::time::Duration;

use serde_json::Value;

use crate::support::{AppOptions, eventually, free_port, slow_job, spawn_app_with, test_models};

async fn probe(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let code = r.status().as_u16();
    let body: Value = r.json().await.ok()?;
    Some((code, body["status"].as_str()?.to_owned()))
}

#[tokio::test]
async fn the_workers_probes_follow_its_state() {
    // Redis keeps its data through the restart below, as in production.
    let mut app = spawn_app_with(AppOptions {
        aof: true,
        ..Default::default()
    })
    .await;
    let bind = format!("127.0.0.1:{}", free_port());
    let w = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "slow"),
            ("INFERQ_METRICS_BIND", &bind),
            ("INFERQ_SHUTDOWN_GRACE_SECS", "30"),
        ],
    );
    let (live, ready) = (
        format!("http://{bind}/livez"),
        format!("http://{bind}/readyz"),
    );
    let within = Duration::from_secs(30);
    eventually(within, "the worker is ready", async || {
        probe(&ready).await == Some((200, "ready".into()))
    })
    .await;
    assert_eq!(probe(&live).await, Some((200, "alive".into())));

    // Redis gone: not ready, still alive (an outage must not restart workers).
    app.redis.kill();
    eventually(within, "readiness notices Redis is gone", async || {
        probe(&ready).await == Some((503, "redis_unavailable".into()))
    })
    .await;
    assert_eq!(probe(&live).await, Some((200, "alive".into())));
    app.redis.restart();
    eventually(within, "ready again once Redis answers", async || {
        probe(&ready).await == Some((200, "ready".into()))
    })
    .await;

    // SIGTERM while a job runs: draining (not ready), alive, until the job is done.
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(1.0)).await;
    app.wait_status(&id, "running", within).await;
    w.signal("TERM");
    eventually(within, "the worker drains", async || {
        probe(&ready).await == Some((503, "draining".into()))
    })
    .await;
    assert_eq!(probe(&live).await, Some((200, "alive".into())));
    let record = app.wait_done(&id, within).await;
    assert_eq!(record["status"], "succeeded", "{record}");
}
