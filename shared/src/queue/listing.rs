//! Listing jobs newest first (the `{ns}:jobs` index), keeping the index in step with the
//! records that expire, and where a waiting job stands in its queue.

use std::sync::LazyLock;

use redis::Script;

use super::keys::{GROUP, Keys, field};
use super::lua::{Argv, argv, lua_script_with};
use super::ops::THROUGHPUT_WINDOW_SECS;
pub use super::walk::Cursor;
use super::walk::Entry;
use super::{Queue, QueueError, StoredJob, walk};
use crate::auth::DEFAULT_TENANT;
use crate::job::{JobId, JobStatus, Priority};
use crate::time::now_ms;

pub(crate) static POSITION: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/position.lua"),
        Argv::head(PositionCall::NAMES),
    )
});

argv! {
    /// `position.lua`'s ARGV (its header says what each is).
    struct PositionCall<'a> {
        group: &'static str,
        entry: &'a str,
        limit: u64,
        higher: usize,
    }
}

/// The field of a listing index entry that holds its job id (`i`: the stream keeps a node's
/// field names once, so only the id costs memory per job).
pub(crate) const INDEX_FIELD: &str = "i";

/// Most jobs ahead of a waiting job that are counted; beyond it the position reads "at least".
pub const POSITION_LIMIT: u64 = 10_000;

/// The fields a listing reads of each record, in the order it reads them.
const RECORD_FIELDS: [&str; 13] = [
    field::MODEL,
    field::STATUS,
    field::TENANT,
    field::CREATED_AT,
    field::STARTED_AT,
    field::FINISHED_AT,
    field::ATTEMPTS,
    field::ERROR_CODE,
    field::ERROR_MESSAGE,
    field::PROGRESS_DONE,
    field::PROGRESS_TOTAL,
    field::PRIORITY,
    field::VERSION,
];

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<JobStatus>,
    pub model: Option<String>,
    /// Only this tenant's jobs; `None`: every tenant's (an admin's listing).
    pub tenant: Option<String>,
}

/// Where a waiting job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Waiting jobs of the same model ahead of it (at most [`POSITION_LIMIT`]).
    pub ahead: u64,
    /// Jobs of the model finished in the last minute.
    pub completed_last_minute: u64,
}

impl Queue {
    /// Up to `limit` jobs matching `filter`, newest first, older than `after` (the previous
    /// page's cursor), and the next page's cursor. Reads a bounded number of index entries per
    /// call, so a page may hold fewer than `limit` jobs while a cursor is still returned; the
    /// cursor is `None` only when nothing older is left in the index (see [`walk`](super::walk)
    /// for how a page resumes among jobs that share a creation time).
    pub async fn list_jobs(
        &self,
        filter: &ListFilter,
        limit: usize,
        after: Option<Cursor>,
    ) -> Result<(Vec<StoredJob>, Option<Cursor>), QueueError> {
        let mut index = RedisIndex { queue: self };
        let reach = walk::Reach::for_limit(limit);
        walk::page(&mut index, limit, after, reach, |r: &StoredJob| {
            filter.status.is_none_or(|s| s == r.status)
                && filter.model.as_ref().is_none_or(|m| *m == r.model)
                && filter.tenant.as_ref().is_none_or(|t| *t == r.tenant)
        })
        .await
    }

    /// Several records in one round trip, without results.
    async fn records(
        &self,
        ids: impl Iterator<Item = JobId>,
    ) -> Result<Vec<Option<StoredJob>>, QueueError> {
        let ids: Vec<JobId> = ids.collect();
        let rows: Vec<Vec<Option<String>>> = self
            .per_job(&ids, |pipe, keys, id| {
                pipe.cmd("HMGET").arg(keys.job(id)).arg(&RECORD_FIELDS);
            })
            .await?;
        Ok(ids
            .into_iter()
            .zip(rows)
            .map(|(id, row)| {
                let mut f = row.into_iter();
                let mut next = || f.next().flatten();
                let (model, status) = (next()?, next()?);
                let tenant = next().unwrap_or_else(|| DEFAULT_TENANT.to_owned());
                let num = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok());
                let (created_at, started_at, finished_at) = (num(next()), num(next()), num(next()));
                let attempts = num(next()).unwrap_or(0) as u32;
                let (code, message) = (next(), next());
                let error = code.map(|code| (code, message.unwrap_or_default()));
                let seconds = |v: Option<String>| v.and_then(|s| s.parse::<f64>().ok());
                let (done, total) = (seconds(next()), seconds(next()));
                let progress = done.map(|d| (d, total));
                let priority = next()
                    .and_then(|p| p.parse::<u8>().ok())
                    .and_then(Priority::new)
                    .unwrap_or_default();
                let version = num(next()).unwrap_or(0);
                Some(StoredJob {
                    id,
                    model,
                    status: JobStatus::parse(&status)?,
                    created_at,
                    started_at,
                    finished_at,
                    attempts,
                    result: None,
                    error,
                    entry: None,
                    cached: false,
                    due: None,
                    tenant,
                    progress,
                    priority,
                    version,
                    // Listings leave the webhook out, as they leave results out.
                    webhook: None,
                })
            })
            .collect())
    }

    /// Looks at up to `count` entries of partition `p`'s listing index after `from` (an
    /// entry id of that partition's index; `None`: from the oldest) and removes those whose
    /// record expired. Returns where the next sweep goes on from (`None` once the end was
    /// reached, to start over) and how many entries it removed. Three steps, not one script
    /// (whose keys would be known only once it ran): a record that expired stays expired, so
    /// what the middle step finds gone is gone when the last one removes it.
    pub async fn sweep_index(
        &self,
        p: usize,
        from: Option<Cursor>,
        count: usize,
    ) -> Result<(Option<Cursor>, u64), QueueError> {
        let keys = self.partition_keys(p);
        let mut conn = self.conn.clone();
        let from = from.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(keys.index())
            .arg(from)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        let entries = super::reply::stream_entries(reply)?;
        let ids: Vec<Option<JobId>> = entries
            .iter()
            .map(|(_, f)| f.get(INDEX_FIELD).and_then(|v| v.parse().ok()))
            .collect();
        let mut pipe = redis::pipe();
        for id in ids.iter().flatten() {
            pipe.exists(keys.job(*id));
        }
        // An empty pipeline is refused by the client: none is sent when no entry names a job.
        let exists: Vec<bool> = if ids.iter().any(Option::is_some) {
            pipe.query_async(&mut conn).await?
        } else {
            Vec::new()
        };
        let mut exists = exists.into_iter();
        let gone: Vec<&str> = entries
            .iter()
            .zip(&ids)
            .filter(|(_, id)| id.is_none() || !exists.next().unwrap_or(true))
            .map(|((entry, _), _)| entry.as_str())
            .collect();
        for chunk in gone.chunks(1000) {
            let _: () = redis::cmd("XDEL")
                .arg(keys.index())
                .arg(chunk)
                .query_async(&mut conn)
                .await?;
        }
        let next = if entries.len() < count {
            None
        } else {
            entries.last().and_then(|(e, _)| Cursor::parse(e))
        };
        Ok((next, gone.len() as u64))
    }

    /// The jobs `model`'s streams hold (waiting and running) and how many of the model's jobs
    /// finished in the last [`THROUGHPUT_WINDOW_SECS`] seconds: what a `Retry-After` for a
    /// full queue is estimated from. Every partition, at once.
    pub async fn backlog(&self, model: &str) -> Result<(u64, u64), QueueError> {
        let second = now_ms() / 1000;
        let lanes = self.keys.lanes(model).len();
        let pipes = self.each_partition().map(|(_, keys)| {
            let mut pipe = redis::pipe();
            for (_, lane) in keys.lanes(model) {
                pipe.cmd("XLEN").arg(lane);
            }
            for ago in 1..=THROUGHPUT_WINDOW_SECS {
                pipe.cmd("GET").arg(keys.done(model, second - ago));
            }
            pipe
        });
        let replies: Vec<Vec<Option<u64>>> = self.query_each(pipes).await?;
        let (mut depth, mut done) = (0, 0);
        for reply in replies {
            let queued = lanes.min(reply.len());
            let (d, f) = reply.split_at(queued);
            depth += d.iter().map(|n| n.unwrap_or(0)).sum::<u64>();
            done += f.iter().map(|n| n.unwrap_or(0)).sum::<u64>();
        }
        Ok((depth, done))
    }

    /// How many waiting jobs of `model` are ahead of the job whose stream entry is `entry` in
    /// the lane of `priority` (in higher lanes, and older in its own), and the model's
    /// recent throughput (`position.lua`, in every partition at once). An entry id is the time
    /// its job was queued, so in the other partitions the jobs ahead are those of a higher
    /// priority and, in the job's own priority, the ones queued before it (by their master's
    /// clock: exact on one node, as close as the masters' clocks on a cluster).
    pub async fn position(
        &self,
        model: &str,
        priority: Priority,
        entry: &str,
    ) -> Result<Position, QueueError> {
        let second = now_ms() / 1000;
        let calls = self.each_partition().map(|(_, keys)| {
            let higher: Vec<String> = keys
                .lanes(model)
                .into_iter()
                .filter(|(p, _)| *p > priority)
                .map(|(_, lane)| lane)
                .collect();
            let mut inv = POSITION.prepare_invoke();
            inv.key(keys.lane(model, priority));
            for lane in &higher {
                inv.key(lane);
            }
            for ago in 1..=THROUGHPUT_WINDOW_SECS {
                inv.key(keys.done(model, second - ago));
            }
            PositionCall {
                group: GROUP,
                entry,
                limit: POSITION_LIMIT,
                higher: higher.len(),
            }
            .push(&mut inv);
            let mut conn = self.conn.clone();
            async move {
                let (ahead, done): (u64, u64) = inv.invoke_async(&mut conn).await?;
                Ok::<_, QueueError>((ahead, done))
            }
        });
        let mut position = Position {
            ahead: 0,
            completed_last_minute: 0,
        };
        for (ahead, done) in futures_util::future::try_join_all(calls).await? {
            position.ahead += ahead;
            position.completed_last_minute += done;
        }
        position.ahead = position.ahead.min(POSITION_LIMIT);
        Ok(position)
    }
}

/// The listing index in Redis, as the cursor walk reads it.
struct RedisIndex<'a> {
    queue: &'a Queue,
}

impl walk::Index for RedisIndex<'_> {
    type Record = StoredJob;
    type Error = QueueError;

    async fn older(
        &mut self,
        after: Option<Cursor>,
        n: usize,
    ) -> Result<(Vec<Entry>, bool), QueueError> {
        let (merged, exhausted) = self.queue.older_merged(Keys::index, after, n).await?;
        let mut entries = Vec::with_capacity(merged.len());
        let mut junk = Vec::new();
        for m in merged {
            match m
                .fields
                .get(INDEX_FIELD)
                .and_then(|v| v.parse::<JobId>().ok())
            {
                Some(id) => entries.push(Entry { at: m.at, id }),
                // Not a job's entry: nothing a listing could show.
                None => junk.push(m.at),
            }
        }
        if !junk.is_empty() {
            self.queue
                .delete_merged(Keys::index, junk.into_iter())
                .await?;
        }
        Ok((entries, exhausted))
    }

    async fn records(&mut self, ids: &[JobId]) -> Result<Vec<Option<StoredJob>>, QueueError> {
        self.queue.records(ids.iter().copied()).await
    }

    async fn forget(&mut self, gone: &[Entry]) -> Result<(), QueueError> {
        self.queue
            .delete_merged(Keys::index, gone.iter().map(|e| e.at))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            ms: 1_763_790_000_123,
            seq: 7,
        };
        assert_eq!(c.to_string(), "1763790000123-7");
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        assert_eq!(
            Cursor::parse("99999999999999999999999-1"),
            Some(Cursor {
                ms: u64::MAX,
                seq: 1
            })
        );
        for bad in [
            "",
            "-",
            "12-",
            "-3",
            "x-1",
            "12-nope",
            "1763790000123-6f1c2d3e-0000-4000-8000-000000000009",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
