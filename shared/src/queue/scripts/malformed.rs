//! Entries a worker could not read (`malformed.lua`): set aside into the dead-letter stream so
//! the valid entries beside them run, and their job failed when its id could be read.

use std::sync::LazyLock;

use redis::Script;

use super::attempts::by_lane;
use super::{Retention, with_ending};
use crate::job::{JobId, Priority};
use crate::queue::keys::{GROUP, RECENT_FAILURES};
use crate::queue::lua::{Argv, argv};
use crate::queue::{EntryRef, Queue, QueueError};
use crate::time::now_ms;

pub(crate) static MALFORMED: LazyLock<Script> = LazyLock::new(|| {
    let argv = Argv {
        head: MalformedCall::NAMES,
        item: MalformedEntry::NAMES,
    };
    with_ending(include_str!("../lua/malformed.lua"), argv)
});

argv! {
    /// `malformed.lua`'s ARGV, once per call.
    struct MalformedCall<'a> {
        group: &'static str,
        now: u64,
        ttl: u64,
        publish: &'static str,
        channel: String,
        model: &'a str,
        keep_failures: usize,
    }
}

argv! {
    /// `malformed.lua`'s ARGV, once per entry.
    struct MalformedEntry<'a> {
        entry: &'a str,
        id: String,
    }
}

impl Queue {
    /// Sets aside entries that could not be read (`malformed.lua`): dead-lettered with
    /// `malformed_entry`, acknowledged, and their job (if its id was readable) failed.
    pub async fn set_aside(
        &self,
        model: &str,
        entries: &[(EntryRef, Option<JobId>)],
        retention: Retention,
    ) -> Result<usize, QueueError> {
        let mut set = 0;
        for (lane, idx) in by_lane(entries, |(e, _)| e.lane()) {
            // A job id of another partition (a hand-written entry) names no job of this one.
            let part: Vec<(String, Option<JobId>)> = idx
                .into_iter()
                .map(|i| {
                    let (entry, job) = &entries[i];
                    let job = job.filter(|j| self.partition_of(*j) == usize::from(entry.partition));
                    (entry.id.clone(), job)
                })
                .collect();
            set += self.set_aside_lane(model, lane, &part, retention).await?;
        }
        Ok(set)
    }

    async fn set_aside_lane(
        &self,
        model: &str,
        (partition, priority): (u16, Priority),
        entries: &[(String, Option<JobId>)],
        retention: Retention,
    ) -> Result<usize, QueueError> {
        let keys = self.partition_keys(usize::from(partition));
        let mut inv = MALFORMED.prepare_invoke();
        inv.key(keys.lane(model, priority))
            .key(keys.dead_letter())
            .key(keys.dead_index())
            .key(keys.failures())
            .key(keys.tenant_active());
        for (_, job) in entries {
            if let Some(job) = job {
                inv.key(keys.job(*job));
            }
        }
        inv.key(keys.hooks()).key(keys.deliveries());
        let publish = self.publish(keys);
        MalformedCall {
            group: GROUP,
            now: now_ms(),
            ttl: retention.secs(),
            publish: publish.command,
            channel: publish.terminal,
            model,
            keep_failures: RECENT_FAILURES,
        }
        .push(&mut inv);
        for (entry, job) in entries {
            MalformedEntry {
                entry,
                id: job.map(|j| j.to_string()).unwrap_or_default(),
            }
            .push(&mut inv);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }
}
