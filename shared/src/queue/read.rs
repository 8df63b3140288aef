//! Reading a queue's entries for a worker: new entries ranked across its priority lanes
//! (`read.lua`, or a plain `XREADGROUP` while only the default lane is in use), blocking reads
//! over several queues, and the takeover of entries whose lease ran out.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use super::keys::GROUP;
use super::lua::{self, Argv, argv};
use super::reply;
use super::{Entry, Queue, QueueError};
use crate::job::Priority;
use crate::time;

/// How long [`Queue::read`] trusts what it read of a queue's used-lanes set.
pub const USED_LANES_TTL: Duration = Duration::from_secs(1);

pub(crate) static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    lua::lua_script_with(
        &[],
        include_str!("lua/read.lua"),
        Argv::head(ReadCall::NAMES),
    )
});

argv! {
    /// `read.lua`'s ARGV (its header says what each is).
    struct ReadCall<'a> {
        group: &'static str,
        consumer: &'a str,
        count: usize,
        now: u64,
        aging: u64,
        top: u8,
        default_priority: u8,
    }
}

impl Queue {
    /// Reads up to `count` new entries of `queue` for `consumer`: first without blocking,
    /// across its priority lanes in rank order (`read.lua`); when none waits and `block` is
    /// given, then blocking up to `block` on every lane at once.
    ///
    /// A queue whose jobs all had the default priority so far (its used-lanes set is empty) is
    /// read with a plain `XREADGROUP` of its default lane: ranking has nothing to rank, and
    /// `read.lua` would copy every entry through Lua (about a third of Redis's CPU per read).
    /// What the set holds is re-read at most every [`USED_LANES_TTL`], and always before a
    /// blocking read: a lane's first entry ever is therefore ranked within a second (an idle
    /// worker sees it at once).
    pub async fn read(
        &self,
        consumer: &str,
        queue: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, QueueError> {
        let (others, just_read) = self.other_lanes(queue, false).await?;
        let got = if others {
            self.read_ranked(consumer, queue, count).await?
        } else {
            self.read_default_lane(consumer, queue, count).await?
        };
        if !got.is_empty() || block.is_none() {
            return Ok(got);
        }
        // Nothing waits in the default lane: a lane used for the first time since the set was
        // read is ranked before the worker blocks.
        if !others && !just_read && self.other_lanes(queue, true).await?.0 {
            let got = self.read_ranked(consumer, queue, count).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
        Ok(self
            .read_any(consumer, &[queue], count, block)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// Whether `queue` has lanes besides its default one in use (its used-lanes set is not
    /// empty), as last read if that was less than [`USED_LANES_TTL`] ago, unless `refresh`;
    /// and whether the set was read just now.
    async fn other_lanes(&self, queue: &str, refresh: bool) -> Result<(bool, bool), QueueError> {
        if self.keys.lanes(queue).len() <= 1 {
            return Ok((false, true));
        }
        if !refresh
            && let Some(&(at, any)) = self.lanes_seen().get(queue)
            && at.elapsed() < USED_LANES_TTL
        {
            return Ok((any, false));
        }
        let members: u64 = redis::cmd("SCARD")
            .arg(self.keys.used_lanes(queue))
            .query_async(&mut self.conn.clone())
            .await?;
        self.lanes_seen()
            .insert(queue.to_owned(), (std::time::Instant::now(), members > 0));
        Ok((members > 0, true))
    }

    fn lanes_seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, (std::time::Instant, bool)>> {
        self.lanes_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The non-blocking read of a queue that has only its default lane in use.
    async fn read_default_lane(
        &self,
        consumer: &str,
        queue: &str,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(self.keys.stream(queue))
            .arg(">")
            .query_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::new();
        for (_, entries) in reply::stream_pairs(reply)? {
            out.extend(reply::parse_entries(entries, Priority::DEFAULT)?);
        }
        Ok(out)
    }

    /// The non-blocking part of [`Queue::read`].
    async fn read_ranked(
        &self,
        consumer: &str,
        queue: &str,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let lanes = self.keys.lanes(queue);
        let Some((top, _)) = lanes.first() else {
            return Ok(Vec::new());
        };
        let mut inv = READ.prepare_invoke();
        for (_, key) in &lanes {
            inv.key(key);
        }
        inv.key(self.keys.used_lanes(queue));
        ReadCall {
            group: GROUP,
            consumer,
            count,
            now: time::now_ms(),
            aging: self.aging.as_millis() as u64,
            top: top.level(),
            default_priority: Priority::DEFAULT.level(),
        }
        .push(&mut inv);
        let reply: Value = inv.invoke_async(&mut self.conn.clone()).await?;
        let Value::Array(parts) = reply else {
            return Err(QueueError::Protocol("read reply is not an array"));
        };
        let mut out = Vec::new();
        let mut parts = parts.into_iter();
        while let (Some(lane), Some(entries)) = (parts.next(), parts.next()) {
            let Value::Int(lane) = lane else {
                return Err(QueueError::Protocol("read reply names no lane"));
            };
            let Some((priority, _)) = usize::try_from(lane - 1).ok().and_then(|i| lanes.get(i))
            else {
                return Err(QueueError::Protocol("read reply names an unknown lane"));
            };
            out.extend(reply::parse_entries(entries, *priority)?);
        }
        Ok(out)
    }

    /// Reads up to `count` new entries from EACH lane of `queues`, blocking up to `block` for
    /// the first. Returns them with the index of their queue, higher lanes first. (Lanes that
    /// receive entries in the same instant can give more than `count` in all.)
    pub async fn read_any(
        &self,
        consumer: &str,
        queues: &[&str],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(usize, Entry)>, QueueError> {
        let mut streams: HashMap<String, (usize, Priority)> = HashMap::new();
        let mut names = Vec::new();
        for (i, q) in queues.iter().enumerate() {
            for (priority, key) in self.keys.lanes(q) {
                names.push(key.clone());
                streams.insert(key, (i, priority));
            }
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&names);
        for _ in &names {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(&mut self.conn.clone()).await?;
        let mut out = Vec::new();
        for (stream, entries) in reply::stream_pairs(reply)? {
            let Some(&(idx, priority)) = streams.get(&stream) else {
                return Err(QueueError::Protocol("XREADGROUP named an unknown stream"));
            };
            for e in reply::parse_entries(entries, priority)? {
                out.push((idx, e));
            }
        }
        // Highest priority first, whatever order Redis answered in.
        out.sort_by_key(|(idx, e)| (*idx, std::cmp::Reverse(e.entry().priority)));
        Ok(out)
    }

    /// Takes over up to `count` entries of `queue` whose lease (idle time) exceeds `lease`:
    /// their worker died or stalled. Higher lanes first.
    pub async fn reclaim(
        &self,
        consumer: &str,
        queue: &str,
        lease: Duration,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let mut out = Vec::new();
        for (priority, key) in self.keys.lanes(queue) {
            if out.len() >= count {
                break;
            }
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(key)
                .arg(GROUP)
                .arg(consumer)
                .arg(lease.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(count - out.len())
                .query_async(&mut self.conn.clone())
                .await?;
            let Value::Array(mut parts) = reply else {
                return Err(QueueError::Protocol("XAUTOCLAIM reply is not an array"));
            };
            if parts.len() < 2 {
                return Err(QueueError::Protocol("XAUTOCLAIM reply is too short"));
            }
            out.extend(reply::parse_entries(parts.swap_remove(1), priority)?);
        }
        Ok(out)
    }
}
