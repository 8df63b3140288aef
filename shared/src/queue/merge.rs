//! Streams kept once per partition (the listing index, the dead letters) read as one, newest
//! first, with one cursor.
//!
//! An entry of partition `p` of `P` with stream id `<ms>-<seq>` is addressed as
//! `<ms>-<seq × P + p>`: still the `<ms>-<seq>` shape clients know, ordered by time, then
//! sequence, then partition, and with one partition exactly the stream's own id.

use std::collections::HashMap;

use super::keys::Keys;
use super::reply::stream_entries;
use super::walk::Cursor;
use super::{Queue, QueueError};

/// One entry of a merged read.
#[derive(Debug, Clone)]
pub(crate) struct Merged {
    /// Its address across partitions.
    pub at: Cursor,
    pub fields: HashMap<String, String>,
}

impl Queue {
    /// The address of entry `<ms>-<seq>` of partition `p`.
    pub(crate) fn merged_cursor(&self, ms: u64, seq: u64, p: usize) -> Cursor {
        let n = self.partitions() as u64;
        Cursor {
            ms,
            seq: seq.saturating_mul(n).saturating_add(p as u64),
        }
    }

    /// The partition and stream entry id an address names.
    pub(crate) fn split_cursor(&self, at: Cursor) -> (usize, String) {
        let n = self.partitions() as u64;
        ((at.seq % n) as usize, format!("{}-{}", at.ms, at.seq / n))
    }

    /// Up to `n` entries of the partitions' streams (`stream` names a partition's) strictly
    /// older than `after` (from the newest when `None`), newest first, and whether they ran
    /// out before `n`. One `XREVRANGE` per partition, all at once.
    pub(crate) async fn older_merged(
        &self,
        stream: impl Fn(&Keys) -> String,
        after: Option<Cursor>,
        n: usize,
    ) -> Result<(Vec<Merged>, bool), QueueError> {
        let count = self.partitions() as u64;
        let calls = self.each_partition().map(|(q, keys)| {
            // Older than `after` in the merged order: up to and including its stream id in
            // the partitions numbered below its own, strictly before it in the others.
            let from = match after {
                None => Some("+".to_owned()),
                Some(c) => {
                    let (ms, seq, p) = (c.ms, c.seq / count, c.seq % count);
                    if (q as u64) < p {
                        Some(format!("{ms}-{seq}"))
                    } else if ms == 0 && seq == 0 {
                        None
                    } else {
                        Some(format!("({ms}-{seq}"))
                    }
                }
            };
            let key = stream(keys);
            let mut conn = self.conn.clone();
            async move {
                let Some(from) = from else {
                    return Ok::<_, QueueError>(Vec::new());
                };
                let reply: redis::Value = redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg(from)
                    .arg("-")
                    .arg("COUNT")
                    .arg(n)
                    .query_async(&mut conn)
                    .await?;
                Ok(stream_entries(reply)?.into_iter().map(|e| (q, e)).collect())
            }
        });
        let per_partition = futures_util::future::try_join_all(calls).await?;
        let mut exhausted = per_partition.iter().all(|e| e.len() < n);
        let mut all: Vec<Merged> = Vec::new();
        for (q, (entry, fields)) in per_partition.into_iter().flatten() {
            // Not an entry id (Redis never writes one): placed before everything.
            let at = Cursor::parse(&entry)
                .map(|c| self.merged_cursor(c.ms, c.seq, q))
                .unwrap_or(Cursor { ms: 0, seq: 0 });
            all.push(Merged { at, fields });
        }
        all.sort_by_key(|m| std::cmp::Reverse(m.at));
        if all.len() > n {
            all.truncate(n);
            exhausted = false;
        }
        Ok((all, exhausted))
    }

    /// Deletes `gone` (addresses of [`Queue::older_merged`]) from the partitions' streams.
    pub(crate) async fn delete_merged(
        &self,
        stream: impl Fn(&Keys) -> String,
        gone: impl Iterator<Item = Cursor>,
    ) -> Result<(), QueueError> {
        let mut by_partition: HashMap<usize, Vec<String>> = HashMap::new();
        for at in gone {
            let (p, entry) = self.split_cursor(at);
            by_partition.entry(p).or_default().push(entry);
        }
        let pipes = by_partition.into_iter().map(|(p, ids)| {
            let mut pipe = redis::pipe();
            pipe.xdel(stream(self.partition_keys(p)), &ids).ignore();
            pipe
        });
        self.query_each::<()>(pipes).await?;
        Ok(())
    }
}
