//! Batches of the OpenAI face (`/v1/batches`): one hash per batch (its record, the job of each
//! request, its status and times), a sorted set per tenant for listing, and the atomic steps
//! of its life: cancelling (`batch_cancel.lua`), taking the lease of its last step
//! (`batch_finalize.lua`) and ending it (`batch_finish.lua`). A batch's requests are jobs like
//! any other; only what the batch adds lives here.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::keys::batch;
use super::lua::{Argv, argv, lua_script_with};
use super::{Queue, QueueError};
use crate::time::now_ms;

static CANCEL_BATCH: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/batch_cancel.lua"),
        Argv::head(CancelBatchCall::NAMES),
    )
});
pub(crate) static FINALIZE: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/batch_finalize.lua"),
        Argv::head(FinalizeCall::NAMES),
    )
});
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/batch_finish.lua"),
        Argv::head(FinishCall::NAMES),
    )
});

#[cfg(test)]
pub(crate) fn scripts() -> [&'static Script; 3] {
    [
        LazyLock::force(&CANCEL_BATCH),
        LazyLock::force(&FINALIZE),
        LazyLock::force(&FINISH),
    ]
}

argv! {
    /// `batch_cancel.lua`'s ARGV.
    struct CancelBatchCall {
        now: u64,
    }
}

argv! {
    /// `batch_finalize.lua`'s ARGV.
    struct FinalizeCall<'a> {
        now_ms: u64,
        now: u64,
        lease: u64,
        ending: &'a str,
    }
}

argv! {
    /// `batch_finish.lua`'s ARGV.
    struct FinishCall<'a> {
        token: &'a str,
        now: u64,
        counts: String,
        tokens: u64,
        output: &'a str,
        errors: &'a str,
    }
}

/// A batch to store.
#[derive(Debug, Clone)]
pub struct NewBatch<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    /// `in_progress`, or `failed` for a batch whose input was refused whole.
    pub status: &'a str,
    /// The parts that never change, as JSON.
    pub record: &'a str,
    /// Its requests, as JSON.
    pub requests: &'a str,
    /// Unix seconds.
    pub created_at: u64,
    /// How long the batch is kept.
    pub ttl: Duration,
}

/// A batch as stored (without its requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub id: String,
    pub tenant: String,
    pub status: String,
    pub record: String,
    pub cancelling_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub expired_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// `(total, completed, failed)` once final.
    pub counts: Option<(u64, u64, u64)>,
    /// Prompt tokens of the succeeded requests, once final.
    pub tokens: Option<u64>,
}

/// What a finalizer writes when it ends a batch.
#[derive(Debug, Clone)]
pub struct FinishedBatch<'a> {
    /// `(total, completed, failed)`.
    pub counts: (u64, u64, u64),
    pub tokens: u64,
    pub output_file_id: Option<&'a str>,
    pub error_file_id: Option<&'a str>,
}

const FIELDS: [&str; 13] = [
    batch::TENANT,
    batch::STATUS,
    batch::RECORD,
    batch::CANCELLING_AT,
    batch::FINALIZING_AT,
    batch::COMPLETED_AT,
    batch::CANCELLED_AT,
    batch::EXPIRED_AT,
    batch::FAILED_AT,
    batch::OUTPUT_FILE_ID,
    batch::ERROR_FILE_ID,
    batch::COUNTS,
    batch::TOKENS,
];

impl Queue {
    /// Stores a new batch and indexes it for its tenant, together.
    pub async fn create_batch(&self, b: &NewBatch<'_>) -> Result<(), QueueError> {
        let key = self.keys.batch(b.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg(batch::TENANT)
            .arg(b.tenant)
            .arg(batch::STATUS)
            .arg(b.status)
            .arg(batch::RECORD)
            .arg(b.record)
            .arg(batch::REQUESTS)
            .arg(b.requests)
            .ignore();
        if b.status == "failed" {
            pipe.cmd("HSET")
                .arg(&key)
                .arg(batch::FAILED_AT)
                .arg(b.created_at)
                .ignore();
        }
        pipe.expire(&key, b.ttl.as_secs().max(1) as i64)
            .ignore()
            .zadd(self.keys.batches(b.tenant), b.id, b.created_at * 1000)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// A batch, or `None` for an unknown or expired id.
    pub async fn batch(&self, id: &str) -> Result<Option<StoredBatch>, QueueError> {
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.batch(id))
            .arg(&FIELDS)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut v = values.into_iter();
        let mut next = || v.next().flatten();
        let (Some(tenant), Some(status), Some(record)) = (next(), next(), next()) else {
            return Ok(None);
        };
        let mut time = || next().and_then(|s| s.parse::<u64>().ok());
        let (cancelling_at, finalizing_at, completed_at) = (time(), time(), time());
        let (cancelled_at, expired_at, failed_at) = (time(), time(), time());
        let (output_file_id, error_file_id, counts, tokens) = (next(), next(), next(), next());
        let counts = counts.and_then(|c| {
            let n: Vec<u64> = c.split(' ').filter_map(|n| n.parse().ok()).collect();
            (n.len() == 3).then(|| (n[0], n[1], n[2]))
        });
        Ok(Some(StoredBatch {
            id: id.to_owned(),
            tenant,
            status,
            record,
            cancelling_at,
            finalizing_at,
            completed_at,
            cancelled_at,
            expired_at,
            failed_at,
            output_file_id,
            error_file_id,
            counts,
            tokens: tokens.and_then(|t| t.parse().ok()),
        }))
    }

    /// A batch's requests as stored, or `None` when it is gone.
    pub async fn batch_requests(&self, id: &str) -> Result<Option<String>, QueueError> {
        Ok(redis::cmd("HGET")
            .arg(self.keys.batch(id))
            .arg(batch::REQUESTS)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Asks a batch to stop (`batch_cancel.lua`): its status afterwards (`cancelling`, or the
    /// final status it already had), `None` for an unknown batch.
    pub async fn cancel_batch(&self, id: &str) -> Result<Option<String>, QueueError> {
        let mut inv = CANCEL_BATCH.prepare_invoke();
        inv.key(self.keys.batch(id));
        CancelBatchCall {
            now: now_ms() / 1000,
        }
        .push(&mut inv);
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Takes the lease of a batch's last step (`batch_finalize.lua`) for `lease`; `ending` is
    /// the status an `in_progress` batch ends in. The token to finish with, or `None` when
    /// another finalizer holds it or the batch is final.
    pub async fn begin_finalizing(
        &self,
        id: &str,
        ending: &str,
        lease: Duration,
    ) -> Result<Option<String>, QueueError> {
        let now = now_ms();
        let mut inv = FINALIZE.prepare_invoke();
        inv.key(self.keys.batch(id));
        FinalizeCall {
            now_ms: now,
            now: now / 1000,
            lease: lease.as_millis() as u64,
            ending,
        }
        .push(&mut inv);
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Ends a batch (`batch_finish.lua`) if `token` still holds its lease: its final status,
    /// or `None` when the lease was taken over.
    pub async fn finish_batch(
        &self,
        id: &str,
        token: &str,
        done: &FinishedBatch<'_>,
    ) -> Result<Option<String>, QueueError> {
        let mut inv = FINISH.prepare_invoke();
        inv.key(self.keys.batch(id));
        let (total, completed, failed) = done.counts;
        FinishCall {
            token,
            now: now_ms() / 1000,
            counts: format!("{total} {completed} {failed}"),
            tokens: done.tokens,
            output: done.output_file_id.unwrap_or(""),
            errors: done.error_file_id.unwrap_or(""),
        }
        .push(&mut inv);
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Up to `limit` of `tenant`'s batches after the batch `after`, newest first, and whether
    /// more follow; ids whose batch expired are dropped from the index.
    pub async fn list_batches(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<StoredBatch>, bool), QueueError> {
        let index = self.keys.batches(tenant);
        let (ids, has_more) = self.page(&index, after, limit, false).await?;
        let mut batches = Vec::with_capacity(ids.len());
        for id in ids {
            match self.batch(&id).await? {
                Some(b) => batches.push(b),
                None => {
                    let _: u64 = redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&id)
                        .query_async(&mut self.conn.clone())
                        .await?;
                }
            }
        }
        Ok((batches, has_more))
    }

    /// The status of each job (as stored, `None` when its record is gone), in one round
    /// trip: a batch's progress.
    pub async fn job_statuses(
        &self,
        ids: &[crate::job::JobId],
    ) -> Result<Vec<Option<String>>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.per_job(ids, |pipe, keys, id| {
            pipe.hget(keys.job(id), super::keys::field::STATUS);
        })
        .await
    }
}
