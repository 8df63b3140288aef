//! Job events on a Redis Cluster: each partition's events go out on its own shard channels
//! (`SPUBLISH`) and are heard by the API on the partition's master, so none crosses the
//! cluster bus; a client waiting for a job still hears it end after the job's slot moved to
//! another master.

use std::time::Duration;

use inferq_shared::config::DEFAULT_CLUSTER_PARTITIONS;
use inferq_shared::job::JobId;
use inferq_shared::queue::Queue;
use serde_json::Value;

use super::low_slot_namespace;
use crate::support::topology::Cluster;
use crate::support::{ApiProcess, Worker, linear_job, slow_job, test_models};

/// A `slow` job (about half a second to a second of inference) submitted until one lands in
/// partition `p`, then waited for with `?wait=`: the wait is answered before its end only if
/// the API hears the job's terminal event, since the job is still running when it starts.
async fn wait_for_a_slow_job_in(client: &crate::support::Client, queue: &Queue, p: usize) -> Value {
    let rows = [[1.0, 2.0, 3.0, 4.0]];
    // An API process gives its new ids to one partition for a run of them: fast jobs first
    // until the run is in `p`, so few slow ones are needed.
    for _ in 0..200 {
        let (status, body) = client.post_json("/jobs", &linear_job(&rows)).await;
        assert_eq!(status, 202, "{body}");
        let id: JobId = body["id"].as_str().unwrap().parse().unwrap();
        if queue.partition_of(id) != p {
            continue;
        }
        let (status, body) = client.post_json("/jobs", &slow_job(1.0)).await;
        assert_eq!(status, 202, "{body}");
        let id: JobId = body["id"].as_str().unwrap().parse().unwrap();
        if queue.partition_of(id) == p {
            let (status, done) = client.get(&format!("/status/{id}?wait=25")).await;
            assert_eq!(status, 200, "{done}");
            return done;
        }
    }
    panic!("no job landed in partition {p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobs_events_stay_with_its_partitions_master_and_follow_a_moved_slot() {
    let cluster = Cluster::start();
    let (ns, tag) = low_slot_namespace(&cluster).await;
    let seeds = cluster.seeds();
    let redis = [("INFERQ_REDIS_CLUSTER", seeds.as_str())];
    let api = ApiProcess::start_on(&redis, &ns, &[]).await;
    let _worker = Worker::start_on(
        &redis,
        &ns,
        &test_models(),
        &[("INFERQ_MODELS", "linear,slow")],
    );
    let client = api.client(None);
    client.wait_models(&["linear", "slow"]).await;
    let config = inferq_shared::config::RedisConfig {
        redis_cluster: seeds.split(',').map(|s| s.parse().unwrap()).collect(),
        partitions: Some(DEFAULT_CLUSTER_PARTITIONS as u16),
        redis_url: None,
        ..inferq_shared::config::RedisConfig::new("", &ns)
    };
    let queue = Queue::connect(&config, Duration::ZERO).await.unwrap();

    // Every partition's jobs: heard, and no `PUBLISH` went over the cluster bus (a `SPUBLISH`
    // goes only to the partition master's replica).
    let (bus, shard) = (
        cluster.counter("cluster_stats_messages_publish_sent"),
        cluster.counter("cluster_stats_messages_publishshard_sent"),
    );
    for p in 0..DEFAULT_CLUSTER_PARTITIONS {
        let done = wait_for_a_slow_job_in(&client, &queue, p).await;
        assert_eq!(done["status"], "succeeded", "partition {p}: {done}");
    }
    assert_eq!(
        cluster.counter("cluster_stats_messages_publish_sent"),
        bus,
        "job events crossed the cluster bus"
    );
    assert!(
        cluster.counter("cluster_stats_messages_publishshard_sent") > shard,
        "the events went out on shard channels"
    );

    // The first partition's slot moves to another master: Redis ends the API's subscription
    // there, the API subscribes again where the slot went, and a client waiting for a job of
    // that partition still hears it end.
    let to = cluster.reshard_from(&tag).await;
    assert_eq!(cluster.nodes[cluster.master_of(&tag)].port, to);
    let done = wait_for_a_slow_job_in(&client, &queue, 0).await;
    assert_eq!(done["status"], "succeeded", "after the move: {done}");
}
