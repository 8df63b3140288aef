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
        channel: String,
        model: &'a str,
        keep_failures: usize,
        hooks: String,
        hook_prefix: String,
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
        for (priority, idx) in by_lane(entries, |(e, _)| e.priority) {
            let part: Vec<(String, Option<JobId>)> = idx
                .into_iter()
                .map(|i| (entries[i].0.id.clone(), entries[i].1))
                .collect();
            set += self
                .set_aside_lane(model, priority, &part, retention)
                .await?;
        }
        Ok(set)
    }

    async fn set_aside_lane(
        &self,
        model: &str,
        priority: Priority,
        entries: &[(String, Option<JobId>)],
        retention: Retention,
    ) -> Result<usize, QueueError> {
        let mut inv = MALFORMED.prepare_invoke();
        inv.key(self.keys.lane(model, priority))
            .key(self.keys.dead_letter())
            .key(self.keys.dead_index())
            .key(self.keys.failures())
            .key(self.keys.tenant_active());
        for (_, job) in entries {
            if let Some(job) = job {
                inv.key(self.keys.job(*job));
            }
        }
        MalformedCall {
            group: GROUP,
            now: now_ms(),
            ttl: retention.secs(),
            channel: self.keys.events(),
            model,
            keep_failures: RECENT_FAILURES,
            hooks: self.keys.hooks(),
            hook_prefix: self.keys.hook_prefix(),
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
