//! The job events the queue publishes, read back: every state change of a job (and every
//! progress update of a running one) is published by the script that makes it, as a
//! `<job id> <status>` line on the namespace's terminal or progress channel. [`JobEvents`]
//! subscribes to both and yields them as a stream of `(job id, status)`.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};

use super::{Keys, QueueError};
use crate::config::RedisConfig;
use crate::job::{JobId, JobStatus};

/// One pub/sub connection's job events, in the order they were published. The stream ends
/// when the connection is lost: events published while no one is subscribed are not heard,
/// so a reader subscribes again and re-reads what it follows.
pub struct JobEvents {
    messages: Pin<Box<dyn Stream<Item = redis::Msg> + Send>>,
    /// The events of the last message not yet yielded.
    pending: std::vec::IntoIter<(JobId, JobStatus)>,
}

impl std::fmt::Debug for JobEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEvents").finish_non_exhaustive()
    }
}

impl JobEvents {
    /// Subscribes to the job events of `keys`' namespace, on a connection of its own.
    pub async fn subscribe(redis: &RedisConfig, keys: &Keys) -> Result<Self, QueueError> {
        let client = super::conn::pubsub_client(redis).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub
            .subscribe(&[keys.events(), keys.progress_events()])
            .await?;
        Ok(Self {
            messages: Box::pin(pubsub.into_on_message()),
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
                Poll::Ready(Some(msg)) => {
                    self.pending = parse(msg.get_payload_bytes())
                        .collect::<Vec<_>>()
                        .into_iter();
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
