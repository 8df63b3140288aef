//! Listing jobs newest first (the `{ns}:jobs` index), keeping the index in step with the
//! records that expire, and where a waiting job stands in its queue.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};

use super::keys::{GROUP, field};
use super::lua::{Argv, argv, lua_script_with};
use super::ops::THROUGHPUT_WINDOW_SECS;
pub use super::walk::Cursor;
use super::walk::Entry;
use super::{Queue, QueueError, StoredJob, walk};
use crate::auth::DEFAULT_TENANT;
use crate::job::{JobId, JobStatus, Priority};
use crate::time::now_ms;

pub(crate) static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/sweep.lua"),
        Argv::head(SweepCall::NAMES),
    )
});

argv! {
    /// `sweep.lua`'s ARGV (its header says what each is).
    struct SweepCall {
        job_prefix: String,
        from: String,
        count: usize,
        field: &'static str,
    }
}
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
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(self.keys.job(*id)).arg(&[
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
            ]);
        }
        let rows: Vec<Vec<Option<String>>> = pipe.query_async(&mut self.conn.clone()).await?;
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

    /// Looks at up to `count` listing index entries after `from` (an entry id; `None`: from
    /// the oldest) and removes those whose record expired (`sweep.lua`). Returns where the next
    /// sweep goes on from (`None` once the end was reached, to start over) and how many
    /// entries it removed.
    pub async fn sweep_index(
        &self,
        from: Option<Cursor>,
        count: usize,
    ) -> Result<(Option<Cursor>, u64), QueueError> {
        let mut inv = SWEEP.prepare_invoke();
        inv.key(self.keys.index());
        SweepCall {
            job_prefix: self.keys.job_prefix(),
            from: from.map_or_else(|| "-".to_owned(), |c| format!("({c}")),
            count,
            field: INDEX_FIELD,
        }
        .push(&mut inv);
        let (next, gone): (String, u64) = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok((Cursor::parse(&next), gone))
    }

    /// The jobs `model`'s stream holds (waiting and running) and how many of the model's jobs
    /// finished in the last [`THROUGHPUT_WINDOW_SECS`] seconds: what a `Retry-After` for a
    /// full queue is estimated from.
    pub async fn backlog(&self, model: &str) -> Result<(u64, u64), QueueError> {
        let second = now_ms() / 1000;
        let lanes = self.keys.lanes(model);
        let mut pipe = redis::pipe();
        for (_, lane) in &lanes {
            pipe.cmd("XLEN").arg(lane);
        }
        for ago in 1..=THROUGHPUT_WINDOW_SECS {
            pipe.cmd("GET").arg(self.keys.done(model, second - ago));
        }
        let reply: Vec<Option<u64>> = pipe.query_async(&mut self.conn.clone()).await?;
        let (depth, done) = reply.split_at(lanes.len().min(reply.len()));
        let sum = |v: &[Option<u64>]| v.iter().map(|d| d.unwrap_or(0)).sum();
        Ok((sum(depth), sum(done)))
    }

    /// How many waiting jobs of `model` are ahead of the stream entry `entry` of the lane of
    /// `priority` (in higher lanes, and older in its own), and the model's recent throughput
    /// (`position.lua`).
    pub async fn position(
        &self,
        model: &str,
        priority: Priority,
        entry: &str,
    ) -> Result<Position, QueueError> {
        let second = now_ms() / 1000;
        let higher: Vec<String> = self
            .keys
            .lanes(model)
            .into_iter()
            .filter(|(p, _)| *p > priority)
            .map(|(_, lane)| lane)
            .collect();
        let mut inv = POSITION.prepare_invoke();
        inv.key(self.keys.lane(model, priority));
        for lane in &higher {
            inv.key(lane);
        }
        for ago in 1..=THROUGHPUT_WINDOW_SECS {
            inv.key(self.keys.done(model, second - ago));
        }
        PositionCall {
            group: GROUP,
            entry,
            limit: POSITION_LIMIT,
            higher: higher.len(),
        }
        .push(&mut inv);
        let (ahead, completed_last_minute): (u64, u64) =
            inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(Position {
            ahead,
            completed_last_minute,
        })
    }
}

/// An index entry as Redis answers it: its id and its fields.
type StreamEntry = (String, Vec<(String, String)>);

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
        let key = self.queue.keys.index();
        let mut conn = self.queue.conn.clone();
        if after == Some(Cursor { ms: 0, seq: 0 }) {
            // Nothing is older than the first possible entry (and `(0-0` is no range start).
            return Ok((Vec::new(), true));
        }
        let from = after.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let reply: Vec<StreamEntry> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg(from)
            .arg("-")
            .arg("COUNT")
            .arg(n)
            .query_async(&mut conn)
            .await?;
        let exhausted = reply.len() < n;
        let mut entries = Vec::with_capacity(reply.len());
        let mut junk = Vec::new();
        for (entry, fields) in reply {
            let id = fields
                .iter()
                .find(|(f, _)| f == INDEX_FIELD)
                .and_then(|(_, v)| v.parse::<JobId>().ok());
            match (Cursor::parse(&entry), id) {
                (Some(at), Some(id)) => entries.push(Entry { at, id }),
                // Not a job's entry: nothing a listing could show.
                _ => junk.push(entry),
            }
        }
        if !junk.is_empty() {
            let _: () = conn.xdel(&key, &junk).await?;
        }
        Ok((entries, exhausted))
    }

    async fn records(&mut self, ids: &[JobId]) -> Result<Vec<Option<StoredJob>>, QueueError> {
        self.queue.records(ids.iter().copied()).await
    }

    async fn forget(&mut self, gone: &[Entry]) -> Result<(), QueueError> {
        let ids: Vec<String> = gone.iter().map(|e| e.at.to_string()).collect();
        let _: () = self
            .queue
            .conn
            .clone()
            .xdel(self.queue.keys.index(), &ids)
            .await?;
        Ok(())
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
