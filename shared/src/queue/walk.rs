//! The cursor walk of `GET /jobs`: one page of the listing index, newest first, resumed
//! exactly after the previous page's last job, whatever shares its creation time.
//!
//! The index is a sorted set of job ids scored by creation time (ms). Many jobs share one
//! score: a bulk submission, or a group-committed burst of single submissions, writes all its
//! jobs with the same `now`. A page must therefore resume after the pair (score, id), not after
//! the score: the jobs at the cursor's score whose id sorts below the cursor's (the order the
//! sorted set keeps ties in), then the older ones. The walk is written against [`Index`] so
//! that a property test can hold it against an in-memory model of the sorted set.

use crate::job::JobId;

/// A listing cursor: the last job of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: u64,
    pub id: JobId,
}

impl Cursor {
    /// `<created_at ms>-<job id>`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('-')?;
        if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            // Past u64::MAX: after every job.
            created_at: ms.parse().unwrap_or(u64::MAX),
            id: id.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.created_at, self.id)
    }
}

/// Index entries read per step: enough for a page of `limit` even when most entries do not
/// match the filters, bounded so one step stays cheap.
fn step_size(limit: usize) -> usize {
    (limit * 4).clamp(100, 2000)
}

/// Index entries one page may look at before it answers with what it found and a cursor (a
/// rare filter must not make one request walk the whole index).
fn scan_budget(limit: usize) -> usize {
    10 * step_size(limit)
}

/// What the walk reads: the listing index with the ordering of a Redis sorted set read in
/// reverse (score descending, then member descending), and the records of its jobs.
pub(crate) trait Index {
    type Record;
    type Error;

    /// The entries strictly older than `after` in the walk's order, newest first: every entry
    /// at `after`'s score whose id sorts below `after`'s, then up to `n` entries of lower
    /// scores (from the top of the index when `after` is `None`: up to `n` entries). The flag
    /// says whether the entries of lower scores ran out before `n`.
    async fn older(
        &mut self,
        after: Option<Cursor>,
        n: usize,
    ) -> Result<(Vec<Cursor>, bool), Self::Error>;

    /// The records of `ids`, in order; `None` for a record that expired.
    async fn records(&mut self, ids: &[JobId]) -> Result<Vec<Option<Self::Record>>, Self::Error>;

    /// Removes from the index entries whose record expired.
    async fn forget(&mut self, gone: &[Cursor]) -> Result<(), Self::Error>;
}

/// How far one page reads: index entries per step and in all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach {
    pub step: usize,
    pub budget: usize,
}

impl Reach {
    pub(crate) fn for_limit(limit: usize) -> Self {
        Self {
            step: step_size(limit),
            budget: scan_budget(limit),
        }
    }
}

/// Up to `limit` records that `matches` accepts, newest first, older than `after`, and the
/// cursor of the next page: `None` only when nothing older is left in the index.
pub(crate) async fn page<I: Index>(
    index: &mut I,
    limit: usize,
    after: Option<Cursor>,
    reach: Reach,
    matches: impl Fn(&I::Record) -> bool,
) -> Result<(Vec<I::Record>, Option<Cursor>), I::Error> {
    let mut out = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    loop {
        let (entries, exhausted) = index.older(cursor, reach.step).await?;
        if entries.is_empty() {
            return Ok((out, None));
        }
        scanned += entries.len();
        let ids: Vec<JobId> = entries.iter().map(|e| e.id).collect();
        let records = index.records(&ids).await?;
        let mut gone = Vec::new();
        let mut consumed_all = true;
        for (i, (entry, record)) in entries.iter().zip(records).enumerate() {
            cursor = Some(*entry);
            match record {
                None => gone.push(*entry),
                Some(r) if matches(&r) => {
                    out.push(r);
                    if out.len() == limit {
                        consumed_all = i + 1 == entries.len();
                        break;
                    }
                }
                Some(_) => {}
            }
        }
        if !gone.is_empty() {
            index.forget(&gone).await?;
        }
        if exhausted && consumed_all {
            // Every entry older than the previous cursor was looked at.
            return Ok((out, None));
        }
        if out.len() == limit || scanned >= reach.budget {
            return Ok((out, cursor));
        }
    }
}

/// Whether `entry` comes after `cursor` in the walk (is older in the listing's order).
pub(crate) fn is_older(entry: &Cursor, cursor: &Cursor) -> bool {
    entry.created_at < cursor.created_at
        || (entry.created_at == cursor.created_at && id_key(&entry.id) < id_key(&cursor.id))
}

/// The bytes the sorted set orders ties by: the id as stored, hyphenated lower-case.
pub(crate) fn id_key(id: &JobId) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests;
