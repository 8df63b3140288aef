//! inferq past one Redis node: the Sentinel and Redis Cluster connection modes against real
//! `redis-sentinel` and clustered `redis-server` processes, the API and workers as processes
//! of their own, and what a client sees when a master is killed under load.

mod cluster;
mod load;
mod modes;
mod sentinel;

/// A namespace of its own for a test.
fn namespace() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}
