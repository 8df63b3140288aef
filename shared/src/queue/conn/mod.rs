//! The one connection every queue command goes through, whichever way Redis is deployed: a
//! single node (the redis crate's `ConnectionManager`, reconnecting to the same address), a
//! Redis Cluster (the crate's cluster client: it discovers the topology from the seeds and
//! follows MOVED, ASK and failovers), or a master found through Sentinel ([`sentinel`]: the
//! crate's `SentinelClient` names the master, and a command that finds it gone or demoted
//! makes the next one ask again). [`pubsub_client`] is the client a subscription uses in each
//! mode; [`commit`] holds back a submission's answer until enough replicas hold it.

pub(crate) mod commit;
mod sentinel;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::QueueError;
use crate::config::{RedisConfig, RedisMode};
pub(crate) use sentinel::SentinelConn;

/// A connection in one of the three modes; cheap to clone (clones share the connection).
#[derive(Clone)]
pub(crate) enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl Conn {
    /// Connects lazily in every mode: the first command connects, and a command issued while
    /// Redis is unreachable fails after the configured timeout instead of hanging.
    /// `extra_timeout` lengthens the command timeout for a connection that issues blocking
    /// reads.
    pub(crate) fn connect(cfg: &RedisConfig, extra_timeout: Duration) -> Result<Self, QueueError> {
        let mode = cfg.mode().map_err(QueueError::Config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout()))
            .set_response_timeout(Some(cfg.timeout() + extra_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(match mode {
            RedisMode::Node(url) => Self::Node(ConnectionManager::new_lazy_with_config(
                cfg.node_client(&url)?,
                manager_config,
            )?),
            RedisMode::Cluster(seeds) => {
                let client = cluster_builder(cfg, &seeds)?
                    .response_timeout(cfg.timeout() + extra_timeout)
                    .retries(8)
                    .max_retry_wait(500)
                    .build()?;
                Self::Cluster(client.get_pending_async_connection_with_config(Default::default()))
            }
            RedisMode::Sentinel { sentinels, master } => {
                Self::Sentinel(SentinelConn::new(cfg, &sentinels, &master, manager_config)?)
            }
        })
    }

    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// `cmd` on the master of `slot` on a cluster (a command that names no key goes where
    /// its slot's keys are); elsewhere on the one server.
    pub(crate) async fn on_slot(&mut self, cmd: Cmd, slot: u16) -> redis::RedisResult<Value> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        match self {
            Self::Cluster(c) => {
                let route = Route::new(slot, SlotAddr::Master);
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
            other => cmd.query_async(other).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

/// A cluster client's settings from the seeds: the configured timeouts and TLS certificates.
pub(crate) fn cluster_builder(
    cfg: &RedisConfig,
    seeds: &[crate::config::RedisUrl],
) -> Result<ClusterClientBuilder, QueueError> {
    let mut builder = ClusterClientBuilder::new(seeds.iter().map(|u| u.expose()))
        .connection_timeout(cfg.timeout())
        .response_timeout(cfg.timeout());
    if let Some(certs) = cfg.tls_certificates()? {
        builder = builder.certs(certs);
    }
    Ok(builder)
}

/// A client for a pub/sub connection in the configured mode: the node; in a cluster, the
/// first seed that answers (a cluster delivers every `PUBLISH` to every node); with Sentinel,
/// the master the sentinels name now. A subscriber whose connection is lost asks again.
pub(crate) async fn pubsub_client(cfg: &RedisConfig) -> Result<redis::Client, QueueError> {
    match cfg.mode().map_err(QueueError::Config)? {
        RedisMode::Node(url) => Ok(cfg.node_client(&url)?),
        RedisMode::Cluster(seeds) => {
            let mut last = None;
            for seed in &seeds {
                let client = cfg.node_client(seed)?;
                let ping = async {
                    let mut c = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut c).await
                };
                match tokio::time::timeout(cfg.timeout(), ping).await {
                    Ok(Ok(_)) => return Ok(client),
                    Ok(Err(e)) => last = Some(QueueError::Redis(e)),
                    Err(_) => last = Some(QueueError::Protocol("a cluster seed did not answer")),
                }
            }
            Err(last.unwrap_or(QueueError::Protocol("no cluster seed")))
        }
        RedisMode::Sentinel { sentinels, master } => {
            Ok(sentinel::master_client(cfg, &sentinels, &master).await?)
        }
    }
}
