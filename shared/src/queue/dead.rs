//! Dead letters: jobs out of attempts and unreadable stream entries, listed (cursor-paged,
//! newest first, optionally one tenant's), retried under the same job id (`dead_retry.lua`)
//! and deleted.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::{AsyncCommands, Script, Value};

use super::keys::{Keys, entry};
use super::lua::{Argv, argv, lua_script_with};
use super::reply::stream_entries;
use super::walk::Cursor;
use super::{Queue, QueueError};
use crate::job::{JobId, Priority};
use crate::time::now_ms;

pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/dead_retry.lua"),
        Argv::head(RetryCall::NAMES),
    )
});

argv! {
    /// `dead_retry.lua`'s ARGV (its header says what each is).
    struct RetryCall<'a> {
        dead_id: &'a str,
        id: String,
        model: &'a str,
        now: u64,
        publish: &'static str,
        progress: String,
        default_tenant: &'static str,
        other_lane: u8,
        ttl: u64,
    }
}

/// An entry of the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter stream entry id.
    pub dead_id: String,
    /// The job, when the entry named a readable one.
    pub job: Option<JobId>,
    pub model: Option<String>,
    /// `max_attempts_exceeded` or `malformed_entry`.
    pub reason: String,
    pub message: Option<String>,
    pub attempts: Option<u32>,
    /// ms since the epoch.
    pub failed_at: Option<u64>,
    /// Whether it still holds a job id and payload, so it can run again.
    pub retryable: bool,
    /// The job's priority: a retry queues it in that lane again.
    pub priority: Priority,
    /// The tenant that submitted the job; `None` for an unreadable entry whose job is
    /// unknown, and for dead letters from before they named their tenant.
    pub tenant: Option<String>,
}

/// The result of retrying a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Queued again; the job's id.
    Queued(JobId),
    NotFound,
    /// The entry holds no job that can run (an unreadable entry).
    NotRetryable,
    /// The job's model was retired.
    ModelUnknown(String),
    /// The job is queued or running already.
    Conflict(JobId),
}

/// Most dead letters one filtered page (`GET /dead?tenant=`) looks at.
pub const DEAD_SCAN_LIMIT: usize = 10_000;

/// A dead letter is addressed by its job id or by its stream entry id (`<ms>-<seq>`).
fn is_entry_id(id: &str) -> bool {
    parse_entry_id(id).is_some()
}

/// `<ms>-<seq>`, as Redis writes stream entry ids; a part past `u64::MAX` reads as
/// `u64::MAX` (still after every id Redis can hold).
fn parse_entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    Some((num(ms)?, num(seq)?))
}

fn dead_letter(dead_id: String, f: &HashMap<String, String>) -> DeadLetter {
    let job = f.get(entry::ID).and_then(|s| s.parse::<JobId>().ok());
    DeadLetter {
        retryable: job.is_some() && f.contains_key(entry::PAYLOAD),
        dead_id,
        job,
        model: f.get("model").cloned(),
        reason: f.get("reason").cloned().unwrap_or_default(),
        message: f.get("message").cloned(),
        attempts: f.get("attempts").and_then(|s| s.parse().ok()),
        failed_at: f.get("failed_at").and_then(|s| s.parse().ok()),
        priority: f
            .get(entry::PRIORITY)
            .and_then(|s| s.parse().ok())
            .and_then(Priority::new)
            .unwrap_or_default(),
        tenant: f.get("tenant").cloned(),
    }
}

impl Queue {
    /// Dead letters, newest first: up to `limit` entries older than `before` (a dead-letter
    /// entry id; `None` from the newest), only `tenant`'s when given. Also returns the cursor
    /// of the next page. A filtered page looks at [`DEAD_SCAN_LIMIT`] entries at most, so it
    /// may hold fewer than `limit` while a cursor says there is more to look at.
    pub async fn dead_letters(
        &self,
        limit: usize,
        before: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<(Vec<DeadLetter>, Option<String>), QueueError> {
        let mut end = match before.map(parse_entry_id) {
            // Nothing precedes the first possible id.
            Some(Some((0, 0))) => return Ok((Vec::new(), None)),
            Some(Some((ms, seq))) => Some(Cursor { ms, seq }),
            Some(None) => return Err(QueueError::Protocol("not a stream entry id")),
            None => None,
        };
        let batch = if tenant.is_some() {
            (limit + 1).max(256)
        } else {
            limit + 1
        };
        let (mut out, mut scanned) = (Vec::new(), 0);
        loop {
            let (entries, exhausted) = self.older_merged(Keys::dead_letter, end, batch).await?;
            let mut last = None;
            for m in entries {
                scanned += 1;
                last = Some(m.at);
                let f = &m.fields;
                if tenant.is_none_or(|t| f.get("tenant").is_some_and(|ft| ft == t)) {
                    out.push(dead_letter(m.at.to_string(), f));
                    if out.len() > limit {
                        break;
                    }
                }
            }
            if out.len() > limit {
                out.truncate(limit);
                let next = out.last().map(|d| d.dead_id.clone());
                return Ok((out, next));
            }
            match last {
                Some(last) if !exhausted => {
                    if scanned >= DEAD_SCAN_LIMIT {
                        return Ok((out, Some(last.to_string())));
                    }
                    end = Some(last);
                }
                _ => return Ok((out, None)),
            }
        }
    }

    /// The partition and stream entry id of a dead-letter id.
    fn split_dead_id(&self, dead_id: &str) -> Result<(usize, String), QueueError> {
        let (ms, seq) = parse_entry_id(dead_id).ok_or(QueueError::Protocol("dead-letter id"))?;
        Ok(self.split_cursor(Cursor { ms, seq }))
    }

    /// Whether `cursor` is a valid dead-letter cursor.
    pub fn is_dead_cursor(cursor: &str) -> bool {
        is_entry_id(cursor)
    }

    /// The dead letter addressed by a job id or a dead-letter id (see
    /// [`merge`](super::merge) for how a dead-letter id names its partition).
    pub async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let mut conn = self.conn.clone();
        let (p, entry) = if let Some((ms, seq)) = parse_entry_id(id) {
            self.split_cursor(Cursor { ms, seq })
        } else if let Ok(job) = id.parse::<JobId>() {
            let p = self.partition_of(job);
            let entry: Option<String> = conn.hget(self.partition_keys(p).dead_index(), id).await?;
            let Some(entry) = entry else {
                return Ok(None);
            };
            (p, entry)
        } else {
            return Ok(None);
        };
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.partition_keys(p).dead_letter())
            .arg(&entry)
            .arg(&entry)
            .query_async(&mut conn)
            .await?;
        Ok(stream_entries(reply)?.into_iter().next().map(|(e, f)| {
            let at = Cursor::parse(&e).map_or(Cursor { ms: 0, seq: 0 }, |c| {
                self.merged_cursor(c.ms, c.seq, p)
            });
            dead_letter(at.to_string(), &f)
        }))
    }

    /// Queues a dead letter's job again as a new series of attempts, same id
    /// (`dead_retry.lua`); the dead letter is removed.
    pub async fn retry_dead(&self, id: &str) -> Result<Retried, QueueError> {
        let Some(dead) = self.dead_letter(id).await? else {
            return Ok(Retried::NotFound);
        };
        let (Some(job), Some(model), true) = (dead.job, dead.model.clone(), dead.retryable) else {
            return Ok(Retried::NotRetryable);
        };
        let (p, entry) = self.split_dead_id(&dead.dead_id)?;
        if p != self.partition_of(job) {
            // A hand-written entry naming a job of another partition.
            return Ok(Retried::NotRetryable);
        }
        let keys = self.partition_keys(p);
        let mut inv = RETRY.prepare_invoke();
        inv.key(keys.dead_letter())
            .key(keys.dead_index())
            .key(keys.job(job))
            .key(keys.lane(&model, dead.priority))
            .key(keys.models())
            .key(keys.tenant_active())
            .key(keys.used_lanes(&model));
        let publish = self.publish(keys);
        RetryCall {
            dead_id: &entry,
            id: job.to_string(),
            model: &model,
            now: now_ms(),
            publish: publish.command,
            progress: publish.progress,
            default_tenant: crate::auth::DEFAULT_TENANT,
            other_lane: u8::from(dead.priority != Priority::DEFAULT),
            ttl: self.retention.secs(),
        }
        .push(&mut inv);
        let reply: String = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(match reply.as_str() {
            "not_found" => Retried::NotFound,
            "not_retryable" => Retried::NotRetryable,
            "model_unknown" => Retried::ModelUnknown(model),
            "conflict" => Retried::Conflict(job),
            _ => Retried::Queued(job),
        })
    }

    /// Deletes a dead letter; false if there was none.
    pub async fn delete_dead(&self, id: &str) -> Result<bool, QueueError> {
        let Some(dead) = self.dead_letter(id).await? else {
            return Ok(false);
        };
        let (p, entry) = self.split_dead_id(&dead.dead_id)?;
        let keys = self.partition_keys(p);
        let mut pipe = redis::pipe();
        pipe.atomic().xdel(keys.dead_letter(), &[&entry]);
        if let Some(job) = dead.job.filter(|j| self.partition_of(*j) == p) {
            pipe.hdel(keys.dead_index(), job.to_string());
        }
        let replies: Vec<i64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(replies.first().is_some_and(|n| *n > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_told_from_job_ids() {
        assert!(is_entry_id("1732250000000-0"));
        assert!(is_entry_id("1-12"));
        assert!(!is_entry_id("1-"));
        assert!(!is_entry_id("-1"));
        assert!(!is_entry_id("6f1c2d8e-0c1d-4c4e-9f6e-0d5b1f3a2b4c"));
        assert!(!is_entry_id("1-2-3"));
        assert_eq!(
            parse_entry_id("99999999999999999999-0"),
            Some((u64::MAX, 0))
        );
        assert!(!is_entry_id("+1-0"));
    }
}
