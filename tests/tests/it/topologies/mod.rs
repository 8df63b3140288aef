//! inferq past one Redis node: the Sentinel and Redis Cluster connection modes against real
//! `redis-sentinel` and clustered `redis-server` processes, the API and workers as processes
//! of their own, and what a client sees when a master is killed under load.

mod cluster;
mod load;
mod modes;
mod partitions;
mod sentinel;

/// A namespace of its own for a test.
fn namespace() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The API's settings in the failover tests: a 202 only once a replica holds the job, and
/// short waits, so a client sees 503s rather than hangs while a master is replaced.
const DURABLE: [(&str, &str); 3] = [
    ("INFERQ_REDIS_WAIT_REPLICAS", "1"),
    ("INFERQ_REDIS_WAIT_TIMEOUT_MS", "500"),
    ("INFERQ_REDIS_TIMEOUT_MS", "1000"),
];
