//! Sentinel mode: the API and a worker find the master through three sentinels, and follow
//! the replica the sentinels promote when the master is killed under load.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{load, namespace};
use crate::support::topology::Sentinels;
use crate::support::{ApiProcess, Worker, eventually, test_models};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_followed_and_every_acknowledged_job_succeeds() {
    let mut set = Sentinels::start();
    let ns = namespace();
    let urls = set.urls();
    let redis = [
        ("INFERQ_REDIS_SENTINELS", urls.as_str()),
        ("INFERQ_REDIS_SENTINEL_MASTER", Sentinels::NAME),
    ];
    let api = ApiProcess::start_on(&redis, &ns, &super::DURABLE).await;
    let _worker = Worker::start_on(&redis, &ns, &test_models(), &[]);
    api.client(None).wait_models(&["linear"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load::steady(api.base.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

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
    load::finish(&api.base, running, &stop, "failover").await;
}
