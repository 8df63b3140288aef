//! The job events the queue publishes, read back: every state change of a job (and every
//! progress update of a running one) is published by the script that makes it, as a
//! `<job id> <status>` line on a terminal or a progress channel. [`JobEvents`] subscribes to
//! every channel a namespace's events go to and yields them as a stream of `(job id, status)`.
//!
//! Where they go ([`Queue::publish`]): on one node or behind Sentinel, the namespace's two
//! channels (`PUBLISH`). On a cluster, each partition's own two channels, under its hash tag,
//! as shard channels (`SPUBLISH`): the message stays with the partition's master (and its
//! replicas), where a `PUBLISH` would go to every node over the cluster bus, where Redis 7.0
//! sends with Nagle's algorithm on (`TCP_NODELAY` only on the bus connections a node
//! accepts), so an event could wait there up to about 40 ms (docs/benchmarks.md, "Job events
//! on a cluster"). A subscriber then listens on every partition's master, and on the
//! namespace's channels too, which processes of older releases still publish to.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};

use redis::{PushInfo, PushKind};

use super::{Keys, Queue, QueueError};
use crate::config::{RedisConfig, RedisMode};
use crate::job::{JobId, JobStatus};

/// Where a script of one partition publishes its events: the command and its two channels.
pub(crate) struct Publish {
    /// `PUBLISH`, or on a cluster `SPUBLISH`.
    pub(crate) command: &'static str,
    pub(crate) terminal: String,
    pub(crate) progress: String,
}

/// Every channel a namespace's events are published on (see the module's header).
#[derive(Debug, Clone)]
pub struct EventChannels {
    /// The namespace's terminal and progress channels.
    global: [String; 2],
    /// Each partition's two shard channels (a cluster only; empty elsewhere).
    sharded: Vec<[String; 2]>,
}

impl EventChannels {
    /// The terminal channels, for the log.
    pub fn describe(&self) -> String {
        let mut all = vec![self.global[0].clone()];
        all.extend(self.sharded.iter().map(|c| c[0].clone()));
        all.join(", ")
    }
}

impl Queue {
    /// Where the scripts working on the partition with keys `part` publish.
    pub(crate) fn publish(&self, part: &Keys) -> Publish {
        if self.conn.is_cluster() {
            Publish {
                command: "SPUBLISH",
                terminal: part.events(),
                progress: part.progress_events(),
            }
        } else {
            Publish {
                command: "PUBLISH",
                terminal: self.keys.events(),
                progress: self.keys.progress_events(),
            }
        }
    }

    /// Every channel this namespace's events go to.
    pub fn event_channels(&self) -> EventChannels {
        let sharded = if self.conn.is_cluster() {
            self.each_partition()
                .map(|(_, k)| [k.events(), k.progress_events()])
                .collect()
        } else {
            Vec::new()
        };
        EventChannels {
            global: [self.keys.events(), self.keys.progress_events()],
            sharded,
        }
    }
}

/// One pub/sub connection's job events, in the order they were published. The stream ends
/// when the connection is lost: events published while no one is subscribed are not heard,
/// so a reader subscribes again and re-reads what it follows.
pub struct JobEvents {
    /// Each message's payload, in order.
    messages: Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>,
    /// A cluster subscription's connection, kept for as long as the stream is read.
    _cluster: Option<redis::cluster_async::ClusterConnection>,
    /// The events of the last message not yet yielded.
    pending: std::vec::IntoIter<(JobId, JobStatus)>,
}

impl std::fmt::Debug for JobEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEvents").finish_non_exhaustive()
    }
}

impl JobEvents {
    /// Subscribes to every channel of `channels`, on connections of its own.
    pub async fn subscribe(
        redis: &RedisConfig,
        channels: &EventChannels,
    ) -> Result<Self, QueueError> {
        if let RedisMode::Cluster(seeds) = redis.mode().map_err(QueueError::Config)?
            && !channels.sharded.is_empty()
        {
            return Self::subscribe_cluster(redis, &seeds, channels).await;
        }
        let client = super::conn::pubsub_client(redis).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channels.global).await?;
        let messages = pubsub
            .into_on_message()
            .map(|m| m.get_payload_bytes().to_vec());
        Ok(Self {
            messages: Box::pin(messages),
            _cluster: None,
            pending: Vec::new().into_iter(),
        })
    }

    /// On a cluster: the crate's cluster client (RESP3, its pushes on a channel) subscribes
    /// to each partition's shard channels on the master that owns them and to the
    /// namespace's channels on one node. The stream ends when a connection is lost or a
    /// subscription moves (a failover, a slot migration: Redis ends a shard subscription
    /// whose slot leaves the node, and the crate subscribes again where it went): events of
    /// that moment may not have been heard, so the reader subscribes afresh and re-reads
    /// what it follows, as on one node.
    async fn subscribe_cluster(
        redis: &RedisConfig,
        seeds: &[crate::config::RedisUrl],
        channels: &EventChannels,
    ) -> Result<Self, QueueError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
        let mut conn = super::conn::cluster_builder(redis, seeds)?
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?
            .get_async_connection()
            .await?;
        conn.subscribe(&channels.global).await?;
        for pair in &channels.sharded {
            conn.ssubscribe(pair).await?;
        }
        // Each channel confirms its subscription once; a second confirmation is a
        // subscription made again after a move.
        let mut confirmed = std::collections::HashSet::new();
        let pushes = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|push| (push, rx))
        });
        let messages = pushes
            .take_while(move |push| {
                let go_on = match push.kind {
                    PushKind::Subscribe | PushKind::SSubscribe => push
                        .data
                        .first()
                        .and_then(|c| redis::from_redis_value_ref::<Vec<u8>>(c).ok())
                        .is_some_and(|c| confirmed.insert(c)),
                    PushKind::Disconnection | PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                        false
                    }
                    _ => true,
                };
                std::future::ready(go_on)
            })
            .filter_map(|push| {
                let payload = match push.kind {
                    PushKind::Message | PushKind::SMessage => push
                        .data
                        .get(1)
                        .and_then(|p| redis::from_redis_value_ref::<Vec<u8>>(p).ok()),
                    _ => None,
                };
                std::future::ready(payload)
            });
        Ok(Self {
            messages: Box::pin(messages),
            _cluster: Some(conn),
            pending: Vec::new().into_iter(),
        })
    }
}

impl Stream for JobEvents {
    type Item = (JobId, JobStatus);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.pending.next() {
                return Poll::Ready(Some(event));
            }
            match self.messages.poll_next_unpin(cx) {
                Poll::Ready(Some(payload)) => {
                    self.pending = parse(&payload).collect::<Vec<_>>().into_iter();
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// `<job id> <status>` lines → the jobs and their new status; unreadable lines are skipped.
fn parse(payload: &[u8]) -> impl Iterator<Item = (JobId, JobStatus)> + '_ {
    std::str::from_utf8(payload)
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let (id, status) = line.split_once(' ')?;
            Some((id.parse().ok()?, JobStatus::parse(status)?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_messages_carry_one_line_per_job() {
        let (a, b) = (JobId::new(), JobId::new());
        let msg = format!("{a} succeeded\n{b} failed\nnot-an-id succeeded\n{a} running");
        let events: Vec<_> = parse(msg.as_bytes()).collect();
        assert_eq!(
            events,
            [
                (a, JobStatus::Succeeded),
                (b, JobStatus::Failed),
                (a, JobStatus::Running)
            ]
        );
    }
}
