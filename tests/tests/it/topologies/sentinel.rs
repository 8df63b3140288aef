//! Sentinel mode: the API and a worker find the master through three sentinels, and follow
//! the replica the sentinels promote when the master is killed under load.

use std::time::Duration;

use super::{load, namespace};
use crate::support::eventually;
use crate::support::topology::Sentinels;

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
    eventually(
        Duration::from_secs(30),
        "the old master replicates the new one",
        async || {
            crate::support::topology::redis_cli(old, &["INFO", "replication"])
                .contains("master_link_status:up")
                .then_some(())
        },
    )
    .await;
    // Submissions after the failover are accepted: the API follows the new master.
    run.finish("failover").await;
}
