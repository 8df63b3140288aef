//! An idle worker's watch over every partition of a cluster at once. One command covers one
//! slot, so the blocking read is one `XREADGROUP` per partition, each on a connection of its
//! own (a blocking command holds its connection). When one comes back with entries, the others
//! are ended with `CLIENT UNBLOCK` (they answer as if their time ran out) and awaited: a read is
//! never abandoned, since one that Redis served in the meantime has put its entries in this
//! consumer's pending list, and they come back with the others.
//!
//! Without it a worker blocked on one partition at a time, and a job landing in another waited
//! for that block to end: 100 ms at the median for one client at a time on a three-master
//! cluster (docs/benchmarks.md, "One client at a time on a cluster").

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::Value;

use super::conn::Conn;
use super::{Entry, Queue, QueueError};
use crate::config::RedisConfig;

/// How often a read not blocked yet when it was told to stop is told again, until it has
/// answered (a read still on its way to Redis is not blocked yet when its `CLIENT UNBLOCK`
/// arrives).
const UNBLOCK_EVERY: Duration = Duration::from_millis(1);

/// The connections of a queue's watch, one per partition, made on its first use.
pub(crate) struct Watch {
    cfg: RedisConfig,
    /// What the connections' response timeout allows beyond the configured one (the block).
    extra_timeout: Duration,
    conns: tokio::sync::OnceCell<Vec<Conn>>,
}

impl Watch {
    pub(crate) fn new(cfg: &RedisConfig, extra_timeout: Duration) -> Self {
        Self {
            cfg: cfg.clone(),
            extra_timeout,
            conns: tokio::sync::OnceCell::new(),
        }
    }

    async fn conns(&self, n: usize) -> Result<&[Conn], QueueError> {
        let conns = self
            .conns
            .get_or_try_init(|| async {
                (0..n)
                    .map(|_| Conn::connect(&self.cfg, self.extra_timeout))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(conns)
    }
}

impl Queue {
    /// [`Queue::read_any`]'s blocking read on a cluster: every partition at once, up to
    /// `block`, until one has entries.
    pub(super) async fn watch_all(
        &self,
        watch: &Watch,
        consumer: &str,
        queues: &[&str],
        count: usize,
        block: Duration,
    ) -> Result<Vec<(usize, Entry)>, QueueError> {
        let n = self.partitions();
        let conns = watch.conns(n).await?;
        // Each read's connection id on its master, for `CLIENT UNBLOCK` (0: not known).
        let ids: Vec<AtomicI64> = (0..n).map(|_| AtomicI64::new(0)).collect();
        let answered: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
        let mut reads: FuturesUnordered<_> = (0..n)
            .map(|p| {
                let (ids, answered) = (&ids, &answered);
                let mut conn = conns[p].clone();
                async move {
                    let slot = self.parts.slots[p];
                    if let Ok(Value::Int(id)) = conn.on_slot(client(&["ID"]), slot).await {
                        ids[p].store(id, Ordering::Relaxed);
                    }
                    let got = self
                        .read_any_on(&mut conn, &[p], consumer, queues, count, Some(block))
                        .await;
                    answered[p].store(true, Ordering::Relaxed);
                    got
                }
            })
            .collect();
        let mut out = Vec::new();
        let mut failed = None;
        let mut unblocking = false;
        let mut unblock = std::pin::pin!(futures_util::future::Fuse::terminated());
        loop {
            tokio::select! {
                next = reads.next() => match next {
                    None => break,
                    Some(Ok(got)) => {
                        if !got.is_empty() && !unblocking {
                            unblocking = true;
                            unblock.set(futures_util::FutureExt::fuse(
                                self.unblock_rest(&ids, &answered),
                            ));
                        }
                        out.extend(got);
                    }
                    Some(Err(e)) => {
                        failed.get_or_insert(e);
                    }
                },
                () = &mut unblock => {}
            }
        }
        match failed {
            // Entries read are never dropped for another read's error: it is read again.
            Some(e) if out.is_empty() => Err(e),
            _ => {
                out.sort_by_key(|(idx, e)| (*idx, std::cmp::Reverse(e.entry().priority)));
                Ok(out)
            }
        }
    }

    /// Ends every read of a watch that has not answered: `CLIENT UNBLOCK` each, all at once,
    /// and again for one that was not blocked yet (its id not yet known, or its read still on
    /// its way to Redis), at most every [`UNBLOCK_EVERY`], until each has answered.
    async fn unblock_rest(&self, ids: &[AtomicI64], answered: &[AtomicBool]) {
        let waiting = |q: usize| !answered[q].load(Ordering::Relaxed);
        let ends = (0..ids.len()).filter(|&q| waiting(q)).map(|q| async move {
            let slot = self.parts.slots[q];
            while waiting(q) {
                let id = ids[q].load(Ordering::Relaxed);
                if id > 0 {
                    let unblock = client(&["UNBLOCK", &id.to_string()]);
                    // 1: it was blocked and now answers; 0: not blocked (yet); an error
                    // leaves that read to its own time.
                    match self.conn.clone().on_slot(unblock, slot).await {
                        Ok(Value::Int(1)) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                tokio::time::sleep(UNBLOCK_EVERY).await;
            }
        });
        futures_util::future::join_all(ends).await;
    }
}

/// `CLIENT <args>`.
fn client(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("CLIENT");
    for a in args {
        cmd.arg(*a);
    }
    cmd
}
