//! Files of the OpenAI face (`/v1/files`): one hash per file holding its description and its
//! bytes, expiring when the file does, and a sorted set per tenant of its file ids by
//! creation time for listing. Both writes of a step land together.

use std::time::Duration;

use super::keys::file;
use super::{Queue, QueueError};

/// A file's description as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub id: String,
    /// The tenant that owns it; every lookup is scoped by it.
    pub tenant: String,
    pub filename: String,
    pub purpose: String,
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the hash expires then.
    pub expires_at: Option<u64>,
}

/// One page of a tenant's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePage {
    pub files: Vec<StoredFile>,
    /// Whether more files follow the page.
    pub has_more: bool,
}

const DESCRIPTION: [&str; 6] = [
    file::TENANT,
    file::FILENAME,
    file::PURPOSE,
    file::BYTES,
    file::CREATED_AT,
    file::EXPIRES_AT,
];

impl Queue {
    /// Stores a file and indexes it for its tenant; the hash expires after `ttl` (none when
    /// zero). Storing the same id again replaces it (a batch's output written twice).
    pub async fn store_file(
        &self,
        f: &StoredFile,
        content: &[u8],
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let key = self.keys.file(&f.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg(file::TENANT)
            .arg(&f.tenant)
            .arg(file::FILENAME)
            .arg(&f.filename)
            .arg(file::PURPOSE)
            .arg(&f.purpose)
            .arg(file::BYTES)
            .arg(f.bytes)
            .arg(file::CREATED_AT)
            .arg(f.created_at)
            .arg(file::CONTENT)
            .arg(content)
            .ignore();
        if let Some(at) = f.expires_at {
            pipe.cmd("HSET")
                .arg(&key)
                .arg(file::EXPIRES_AT)
                .arg(at)
                .ignore();
        }
        if !ttl.is_zero() {
            pipe.expire(&key, ttl.as_secs().max(1) as i64).ignore();
        }
        pipe.zadd(self.keys.files(&f.tenant), &f.id, f.created_at * 1000)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// A file's description, or `None` for an unknown, expired or deleted id.
    pub async fn file(&self, id: &str) -> Result<Option<StoredFile>, QueueError> {
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.file(id))
            .arg(&DESCRIPTION)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(described(id, values))
    }

    /// A file's bytes, or `None` when it is gone.
    pub async fn file_content(&self, id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(redis::cmd("HGET")
            .arg(self.keys.file(id))
            .arg(file::CONTENT)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Deletes a file of `tenant`'s; false when there was none.
    pub async fn delete_file(&self, id: &str, tenant: &str) -> Result<bool, QueueError> {
        let (deleted, _): (u64, u64) = redis::pipe()
            .atomic()
            .del(self.keys.file(id))
            .zrem(self.keys.files(tenant), id)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(deleted == 1)
    }

    /// Up to `limit` of `tenant`'s files after the file `after` (or from the first), oldest
    /// first when `ascending`, else newest first. Ids whose file expired are dropped from the
    /// index as the page meets them, so a page may hold fewer than `limit` files.
    pub async fn list_files(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
        ascending: bool,
    ) -> Result<FilePage, QueueError> {
        let index = self.keys.files(tenant);
        let (ids, has_more) = self.page(&index, after, limit, ascending).await?;
        let mut files = Vec::with_capacity(ids.len());
        for id in ids {
            match self.file(&id).await? {
                Some(f) => files.push(f),
                None => {
                    let _: u64 = redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&id)
                        .query_async(&mut self.conn.clone())
                        .await?;
                }
            }
        }
        Ok(FilePage { files, has_more })
    }

    /// Up to `limit` members of the sorted set `index` after the member `after` (from the
    /// first when it is `None` or no longer a member), and whether more follow.
    pub(crate) async fn page(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
        ascending: bool,
    ) -> Result<(Vec<String>, bool), QueueError> {
        let mut conn = self.conn.clone();
        let rank_cmd = if ascending { "ZRANK" } else { "ZREVRANK" };
        let start = match after {
            Some(a) => {
                let rank: Option<i64> = redis::cmd(rank_cmd)
                    .arg(index)
                    .arg(a)
                    .query_async(&mut conn)
                    .await?;
                rank.map_or(0, |r| r + 1)
            }
            None => 0,
        };
        let stop = start + limit.max(1) as i64;
        let range_cmd = if ascending { "ZRANGE" } else { "ZREVRANGE" };
        let (ids, total): (Vec<String>, i64) = redis::pipe()
            .cmd(range_cmd)
            .arg(index)
            .arg(start)
            .arg(stop - 1)
            .cmd("ZCARD")
            .arg(index)
            .query_async(&mut conn)
            .await?;
        Ok((ids, total > stop))
    }
}

/// The description read back, or `None` when the hash is gone.
fn described(id: &str, values: Vec<Option<String>>) -> Option<StoredFile> {
    let mut v = values.into_iter();
    let mut next = || v.next().flatten();
    let (tenant, filename, purpose) = (next()?, next(), next());
    let number = |s: Option<String>| s.and_then(|s| s.parse::<u64>().ok());
    let (bytes, created_at, expires_at) = (number(next()), number(next()), number(next()));
    Some(StoredFile {
        id: id.to_owned(),
        tenant,
        filename: filename.unwrap_or_default(),
        purpose: purpose.unwrap_or_default(),
        bytes: bytes.unwrap_or(0),
        created_at: created_at.unwrap_or(0),
        expires_at,
    })
}
