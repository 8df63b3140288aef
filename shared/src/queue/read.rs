//! Reading a queue's entries for a worker: new entries ranked across its priority lanes
//! (`read.lua`, or a plain `XREADGROUP` while only the default lane is in use), the partitions
//! taken in turn, blocking reads over several queues, and the takeover of entries whose lease
//! ran out.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
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
    /// Reads up to `count` new entries of `queue` for `consumer`: first without blocking, from
    /// the first partition with waiting entries, taking the partitions in turn (each read
    /// starts one past the partition the last one read from, so none starves), each across its
    /// priority lanes in rank order (`read.lua`); when none waits and `block` is given, then
    /// blocking on every lane of every partition at once ([`Queue::read_any`]).
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
        let first = self.turn.load(Ordering::Relaxed);
        let n = self.partitions();
        for k in 0..n {
            let p = (first + k) % n;
            let got = self
                .read_partition(p, consumer, queue, count, block.is_some())
                .await?;
            if !got.is_empty() {
                self.turn.store(p + 1, Ordering::Relaxed);
                return Ok(got);
            }
        }
        if block.is_none() {
            return Ok(Vec::new());
        }
        Ok(self
            .read_any(consumer, &[queue], count, block)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// The non-blocking read of one partition of `queue`; `before_block`: the caller blocks
    /// next if this finds nothing, so a lane used for the first time since the used-lanes set
    /// was read is looked at first.
    async fn read_partition(
        &self,
        p: usize,
        consumer: &str,
        queue: &str,
        count: usize,
        before_block: bool,
    ) -> Result<Vec<Entry>, QueueError> {
        let (others, just_read) = self.other_lanes(p, queue, false).await?;
        let got = if others {
            self.read_ranked(p, consumer, queue, count).await?
        } else {
            self.read_default_lane(p, consumer, queue, count).await?
        };
        if !got.is_empty() || !before_block || others || just_read {
            return Ok(got);
        }
        if self.other_lanes(p, queue, true).await?.0 {
            return self.read_ranked(p, consumer, queue, count).await;
        }
        Ok(got)
    }

    /// Whether `queue` has lanes besides its default one in use in partition `p` (its
    /// used-lanes set is not empty), as last read if that was less than [`USED_LANES_TTL`]
    /// ago, unless `refresh`; and whether the set was read just now.
    async fn other_lanes(
        &self,
        p: usize,
        queue: &str,
        refresh: bool,
    ) -> Result<(bool, bool), QueueError> {
        let keys = self.partition_keys(p);
        if keys.lanes(queue).len() <= 1 {
            return Ok((false, true));
        }
        let seen = (p, queue.to_owned());
        if !refresh
            && let Some(&(at, any)) = self.lanes_seen().get(&seen)
            && at.elapsed() < USED_LANES_TTL
        {
            return Ok((any, false));
        }
        let members: u64 = redis::cmd("SCARD")
            .arg(keys.used_lanes(queue))
            .query_async(&mut self.conn.clone())
            .await?;
        self.lanes_seen()
            .insert(seen, (std::time::Instant::now(), members > 0));
        Ok((members > 0, true))
    }

    fn lanes_seen(&self) -> std::sync::MutexGuard<'_, super::LanesSeen> {
        self.lanes_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The non-blocking read of a partition of a queue that has only its default lane in use.
    async fn read_default_lane(
        &self,
        p: usize,
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
            .arg(self.partition_keys(p).stream(queue))
            .arg(">")
            .query_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::new();
        for (_, entries) in reply::stream_pairs(reply)? {
            out.extend(reply::parse_entries(
                entries,
                (p as u16, Priority::DEFAULT),
            )?);
        }
        Ok(out)
    }

    /// The ranked non-blocking read of one partition (`read.lua`).
    async fn read_ranked(
        &self,
        p: usize,
        consumer: &str,
        queue: &str,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let keys = self.partition_keys(p);
        let lanes = keys.lanes(queue);
        let Some((top, _)) = lanes.first() else {
            return Ok(Vec::new());
        };
        let mut inv = READ.prepare_invoke();
        for (_, key) in &lanes {
            inv.key(key);
        }
        inv.key(keys.used_lanes(queue));
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
            out.extend(reply::parse_entries(entries, (p as u16, *priority))?);
        }
        Ok(out)
    }

    /// Reads up to `count` new entries from EACH lane of `queues`, blocking for the first.
    /// Returns them with the index of their queue, higher lanes first. (Lanes that receive
    /// entries in the same instant can give more than `count` in all.)
    ///
    /// One command covers one slot, so on a cluster each partition is read by a command of its
    /// own: without `block` one after the other, with it all at once, each on a connection of
    /// its own ([`Queue::watch_all`]). On one node (or behind Sentinel) one `XREADGROUP` covers
    /// every partition.
    pub async fn read_any(
        &self,
        consumer: &str,
        queues: &[&str],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(usize, Entry)>, QueueError> {
        let n = self.partitions();
        if let (Some(watch), Some(block)) = (&self.watch, block) {
            return self.watch_all(watch, consumer, queues, count, block).await;
        }
        let reads: Vec<Vec<usize>> = if self.conn.is_cluster() {
            (0..n).map(|p| vec![p]).collect()
        } else {
            vec![(0..n).collect()]
        };
        let mut out = Vec::new();
        for parts in reads {
            let mut conn = self.conn.clone();
            out.extend(
                self.read_any_on(&mut conn, &parts, consumer, queues, count, block)
                    .await?,
            );
        }
        // Highest priority first, whatever order Redis answered in.
        out.sort_by_key(|(idx, e)| (*idx, std::cmp::Reverse(e.entry().priority)));
        Ok(out)
    }

    /// One `XREADGROUP` over every lane of `queues` in the partitions `parts` (all in one slot
    /// on a cluster), on `conn`, in the order Redis answers (the callers rank them).
    pub(super) async fn read_any_on(
        &self,
        conn: &mut super::conn::Conn,
        parts: &[usize],
        consumer: &str,
        queues: &[&str],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(usize, Entry)>, QueueError> {
        let mut streams: HashMap<String, (usize, Priority, usize)> = HashMap::new();
        let mut names = Vec::new();
        for &p in parts {
            let keys = self.partition_keys(p);
            for (i, q) in queues.iter().enumerate() {
                for (priority, key) in keys.lanes(q) {
                    names.push(key.clone());
                    streams.insert(key, (i, priority, p));
                }
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
        let reply: Value = cmd.query_async(conn).await?;
        let mut out = Vec::new();
        for (stream, entries) in reply::stream_pairs(reply)? {
            let Some(&(idx, priority, p)) = streams.get(&stream) else {
                return Err(QueueError::Protocol("XREADGROUP named an unknown stream"));
            };
            for e in reply::parse_entries(entries, (p as u16, priority))? {
                out.push((idx, e));
            }
        }
        Ok(out)
    }

    /// Takes over up to `count` entries of `queue` whose lease (idle time) exceeds `lease`:
    /// their worker died or stalled. Every partition, higher lanes first.
    pub async fn reclaim(
        &self,
        consumer: &str,
        queue: &str,
        lease: Duration,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let mut out = Vec::new();
        for (p, keys) in self.each_partition() {
            for (priority, key) in keys.lanes(queue) {
                if out.len() >= count {
                    return Ok(out);
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
                out.extend(reply::parse_entries(
                    parts.swap_remove(1),
                    (p as u16, priority),
                )?);
            }
        }
        Ok(out)
    }
}
