//! Sentinel mode: the API and a worker find the master through three sentinels, and follow
//! the replica the sentinels promote when the master is killed under load.

use std::time::Duration;

use super::{load, namespace};
use crate::support::topology::{Sentinels, redis_cli};
use crate::support::{eventually, eventually_every};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_followed_and_every_acknowledged_job_succeeds() {
    let mut set = Sentinels::start();
    let ns = namespace();
    let urls = set.urls();
    let redis = [
        ("INFERQ_REDIS_SENTINELS", urls.as_str()),
        ("INFERQ_REDIS_SENTINEL_MASTER", Sentinels::NAME),
    ];
    let run = load::Run::start(&redis, &ns, &super::DURABLE).await;

    // kill -9 of the master: the sentinels promote the replica.
    let old = set.master.port;
    set.master.kill();
    eventually(
        Duration::from_secs(30),
        "the sentinels promote the replica",
        async || (set.master_port() == set.replica.port).then_some(()),
    )
    .await;
    // The old master comes back as the new master's replica (as an operator restarts it;
    // the sentinels would convert it too, but not while in TILT mode, which a busy machine
    // can put them in), so submissions can be held by a replica again.
    set.master.restart_as_replica_of(set.replica.port);
    let new = set.replica.port.to_string();
    let since = std::time::Instant::now();
    eventually_every(
        Duration::from_secs(1),
        Duration::from_secs(60),
        "the old master replicates the new one",
        async || {
            let info = redis_cli(old, &["INFO", "replication"]);
            if info.contains("master_link_status:up") {
                return Ok(());
            }
            // A sync that has not begun after a while is asked for again, as an operator would
            // (a loaded machine has been seen to leave the first one pending).
            if since.elapsed() > Duration::from_secs(20)
                && !info.contains("master_sync_in_progress:1")
            {
                redis_cli(old, &["REPLICAOF", "127.0.0.1", &new]);
            }
            Err(format!(
                "old master: {info}; new master: {}",
                redis_cli(set.replica.port, &["INFO", "replication"])
            ))
        },
    )
    .await;
    // Submissions after the failover are accepted: the API follows the new master.
    run.finish("failover").await;
}
