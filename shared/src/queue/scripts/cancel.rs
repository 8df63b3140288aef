//! Cancellation (`cancel.lua`): a job that has not finished ends `cancelled`, wherever it is
//! (scheduled, queued or running).

use std::sync::LazyLock;

use redis::Script;

use super::{Retention, with_ending};
use crate::job::{JobId, JobStatus, Priority};
use crate::queue::keys::{GROUP, field, pipeline_of};
use crate::queue::lua::{Argv, argv};
use crate::queue::{Queue, QueueError};
use crate::time::now_ms;

pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    with_ending(
        include_str!("../lua/cancel.lua"),
        Argv::head(CancelCall::NAMES),
    )
});

argv! {
    /// `cancel.lua`'s ARGV.
    struct CancelCall {
        now: u64,
        ttl: u64,
        publish: &'static str,
        channel: String,
        group: &'static str,
        id: String,
    }
}

/// The result of a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    Cancelled,
    NotFound,
    AlreadyFinished(JobStatus),
}

impl Queue {
    /// Cancels a job that has not finished (`cancel.lua`).
    pub async fn cancel(&self, id: JobId, retention: Retention) -> Result<Cancelled, QueueError> {
        let mut conn = self.conn.clone();
        let (model, priority): (Option<String>, Option<u8>) = redis::cmd("HMGET")
            .arg(self.job_keys(id).job(id))
            .arg(field::MODEL)
            .arg(field::PRIORITY)
            .query_async(&mut conn)
            .await?;
        let Some(model) = model else {
            return Ok(Cancelled::NotFound);
        };
        let priority = priority.and_then(Priority::new).unwrap_or_default();
        let keys = self.job_keys(id);
        let mut inv = CANCEL.prepare_invoke();
        inv.key(keys.job(id))
            .key(keys.lane(&model, priority))
            .key(keys.tenant_active())
            .key(keys.hooks())
            .key(keys.deliveries());
        if pipeline_of(&model).is_some() {
            inv.key(keys.upload(id));
        }
        let publish = self.publish(keys);
        CancelCall {
            now: now_ms(),
            ttl: retention.secs(),
            publish: publish.command,
            channel: publish.terminal,
            group: GROUP,
            id: id.to_string(),
        }
        .push(&mut inv);
        let before: Option<String> = inv.invoke_async(&mut conn).await?;
        Ok(match before.as_deref().and_then(JobStatus::parse) {
            None => Cancelled::NotFound,
            Some(s) if s.is_terminal() => Cancelled::AlreadyFinished(s),
            Some(_) => Cancelled::Cancelled,
        })
    }
}
