//! inferq past one Redis node: the Sentinel and Redis Cluster connection modes against real
//! `redis-sentinel` and clustered `redis-server` processes, the API and workers as processes
//! of their own, and what a client sees when a master is killed under load.

mod cluster;
mod demotion;
mod events;
mod load;
mod modes;
mod partitions;
mod sentinel;

use std::time::Duration;

use inferq_shared::config::DEFAULT_CLUSTER_PARTITIONS;
use inferq_shared::queue::partition_tag;

use crate::support::topology::{Cluster, redis_cli};
use crate::support::{Client, Redis, eventually_blocking, linear_job};

/// A namespace of its own for a test.
fn namespace() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A namespace whose first partition's slot is among the first 100 of the master serving slot
/// 0 (those [`Cluster::reshard_from`] moves), and that partition's hash tag.
async fn low_slot_namespace(cluster: &Cluster) -> (String, String) {
    let mut conn = cluster.nodes[0].conn().await;
    loop {
        let ns = namespace();
        let tag = format!("{{{}}}", partition_tag(&ns, 0, DEFAULT_CLUSTER_PARTITIONS));
        let slot: u64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&tag)
            .query_async(&mut conn)
            .await
            .unwrap();
        if slot < 100 {
            return (ns, tag);
        }
    }
}

/// The API's settings in the failover tests: a 202 only once a replica holds the job, and
/// short waits, so a client sees 503s rather than hangs while a master is replaced.
const DURABLE: [(&str, &str); 3] = [
    ("INFERQ_REDIS_WAIT_REPLICAS", "1"),
    ("INFERQ_REDIS_WAIT_TIMEOUT_MS", "500"),
    ("INFERQ_REDIS_TIMEOUT_MS", "1000"),
];

/// Walks `GET /jobs` from the newest job to the oldest, `limit` a page, through `get` (a
/// client's `GET`): asserts each job comes once and newest first, and returns their ids.
async fn walk_listing(
    get: impl AsyncFn(&str) -> (u16, serde_json::Value),
    limit: usize,
) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    // RFC 3339 times in UTC with milliseconds: their text orders as their times do.
    let (mut cursor, mut last) = (None::<String>, "~".to_owned());
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs?limit={limit}&cursor={c}"),
            None => format!("/jobs?limit={limit}"),
        };
        let (status, page) = get(&path).await;
        assert_eq!(status, 200, "{page}");
        for job in page["jobs"].as_array().unwrap() {
            assert!(seen.insert(job["id"].as_str().unwrap().to_owned()), "{job}");
            let created = job["created_at"].as_str().unwrap().to_owned();
            assert!(created <= last, "not newest first: {job}");
            last = created;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
}

/// A replica of the Redis on `port`, once it is in sync.
pub(super) fn replica_of(port: u16) -> Redis {
    let replica = Redis::start_with_args(
        false,
        vec!["--replicaof".into(), "127.0.0.1".into(), port.to_string()],
    );
    in_sync(&replica);
    replica
}

/// Waits until `replica`'s link to its master is up.
pub(super) fn in_sync(replica: &Redis) {
    eventually_blocking(Duration::from_secs(10), "the replica is in sync", || {
        redis_cli(replica.port, &["INFO", "replication"])
            .contains("master_link_status:up")
            .then_some(())
    });
}

/// `POST /jobs` of one small linear job with `Idempotency-Key: key`: the status, whether a
/// `Retry-After` came, and the body.
pub(super) async fn submit_keyed(client: Client, key: &str) -> (u16, bool, serde_json::Value) {
    let r = client
        .request(reqwest::Method::POST, "/jobs")
        .header("Idempotency-Key", key)
        .json(&linear_job(&[[1.0, 2.0, 3.0, 4.0]]))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    (status, retry_after, r.json().await.unwrap())
}
