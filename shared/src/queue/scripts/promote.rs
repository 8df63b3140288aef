//! Scheduled jobs moved to their queues when due (`promote.lua`), by every worker a few times
//! a second, partition by partition.

use std::sync::LazyLock;

use redis::Script;

use super::script;
use crate::job::{JobId, Priority};
use crate::queue::keys::{Keys, field};
use crate::queue::lua::{Argv, argv};
use crate::queue::{Queue, QueueError};
use crate::time::now_ms;

pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    script(
        include_str!("../lua/promote.lua"),
        Argv {
            head: PromoteCall::NAMES,
            item: PromoteJob::NAMES,
        },
    )
});

argv! {
    /// `promote.lua`'s ARGV, once per call.
    struct PromoteCall {
        now: u64,
        publish: &'static str,
        progress: String,
    }
}

argv! {
    /// `promote.lua`'s ARGV, once per job.
    struct PromoteJob<'a> {
        id: String,
        model: &'a str,
        priority: u8,
    }
}

impl Queue {
    /// Moves up to `count` scheduled jobs that are due to their models' queues
    /// (`promote.lua`); returns how many moved.
    pub async fn promote_due(&self, count: usize) -> Result<usize, QueueError> {
        let mut moved = 0;
        for (_, keys) in self.each_partition() {
            moved += self.promote_in(keys, count).await?;
        }
        Ok(moved)
    }

    /// [`Queue::promote_due`] in the partition of `keys`: the due jobs and their lanes are
    /// read first, so the step that moves them names every key it touches; it checks each job
    /// is still scheduled and due.
    async fn promote_in(&self, keys: &Keys, count: usize) -> Result<usize, QueueError> {
        let now = now_ms();
        let mut conn = self.conn.clone();
        let due: Vec<JobId> = self
            .due(keys.scheduled(), now, count)
            .await?
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &due {
            pipe.hget(keys.job(*id), field::MODEL)
                .hget(keys.job(*id), field::PRIORITY);
        }
        let found: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        let mut inv = PROMOTE.prepare_invoke();
        inv.key(keys.scheduled());
        let mut jobs = Vec::with_capacity(due.len());
        for (id, f) in due.iter().zip(found.chunks(2)) {
            let model = f[0].clone().unwrap_or_default();
            let priority = f
                .get(1)
                .cloned()
                .flatten()
                .and_then(|p| p.parse().ok())
                .and_then(Priority::new)
                .unwrap_or_default();
            // A record that is gone names no lane: the set's key stands in, and the job
            // only leaves the set.
            let (lane, used) = if model.is_empty() {
                (keys.scheduled(), keys.scheduled())
            } else {
                (keys.lane(&model, priority), keys.used_lanes(&model))
            };
            inv.key(keys.job(*id)).key(lane).key(used);
            jobs.push((id.to_string(), model, priority.level()));
        }
        let publish = self.publish(keys);
        PromoteCall {
            now,
            publish: publish.command,
            progress: publish.progress,
        }
        .push(&mut inv);
        for (id, model, priority) in &jobs {
            PromoteJob {
                id: id.clone(),
                model,
                priority: *priority,
            }
            .push(&mut inv);
        }
        Ok(inv.invoke_async(&mut conn).await?)
    }
}
