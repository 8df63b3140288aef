//! A submission waiting for its replicas (`INFERQ_REDIS_WAIT_REPLICAS`) whose `WAIT` Redis ends
//! with an `UNBLOCKED` error is answered `503` with `Retry-After`, never `500`: Redis ends a
//! blocked `WAIT` that way when a failover turns its master into a replica (seen in a Sentinel
//! failover under load), an outage that passes. `CLIENT UNBLOCK … ERROR` gives the same reply.

use std::time::Duration;

use super::{replica_of, submit_keyed};
use crate::support::topology::redis_cli;
use crate::support::{AppOptions, eventually, spawn_app_with, test_models};

#[tokio::test]
async fn a_submission_whose_wait_redis_ends_with_unblocked_is_503() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| {
            c.redis.redis_wait_replicas = 1;
            c.redis.redis_wait_timeout_ms = 60_000;
        }),
        ..AppOptions::default()
    })
    .await;
    let _worker = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let port = app.redis.port;
    let submit = |key: &'static str| submit_keyed(app.anonymous(), key);
    // A first submission with a replica in sync: acknowledged (and the script loaded).
    let replica = replica_of(port);
    let (status, _, body) = submit("first").await;
    assert_eq!(status, 202, "{body}");
    drop(replica);

    // No replica any more: the next submission's write is done and its `WAIT` blocks (for up
    // to a minute) until Redis ends it.
    let submission = tokio::spawn(submit("unblocked"));
    let waiting = eventually(Duration::from_secs(10), "a WAIT blocks", async || {
        let clients = redis_cli(port, &["CLIENT", "LIST"]);
        clients
            .lines()
            .find(|l| l.contains(" flags=b ") && l.contains(" cmd=wait "))
            .and_then(|l| l.strip_prefix("id="))
            .and_then(|l| l.split(' ').next())
            .map(str::to_owned)
            .ok_or(clients)
    })
    .await;
    assert_eq!(
        redis_cli(port, &["CLIENT", "UNBLOCK", &waiting, "ERROR"]).trim(),
        "1"
    );
    let (status, retry_after, body) = tokio::time::timeout(Duration::from_secs(10), submission)
        .await
        .expect("the submission is answered once its wait ends")
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(retry_after, "{body}");
}
