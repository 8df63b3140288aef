//! The cursor walk of `GET /jobs`: one page of the listing index, newest first, resumed
//! exactly after the previous page's last entry.
//!
//! The index is a Redis stream with one entry per job (`{ns}:listing`), appended when the job
//! is written: one small entry in a compact node (about 50 bytes a job), where a sorted set
//! scored by creation time cost about 145. Its entry ids order every job, however many share a
//! millisecond (a bulk submission, a group-committed burst), so a cursor is an entry id and a
//! page resumes with the entries strictly older than it. The walk is written against [`Index`]
//! so that a property test can hold it against an in-memory model of the stream.

use crate::job::JobId;

/// A listing cursor: the index entry of the previous page's last job, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub ms: u64,
    pub seq: u64,
}

impl Cursor {
    /// `<ms>-<seq>`, a stream entry id.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        // Past the largest entry id: after every entry.
        Some(Self {
            ms: ms.parse().unwrap_or(u64::MAX),
            seq: seq.parse().unwrap_or(u64::MAX),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One index entry: where it stands and the job it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub at: Cursor,
    pub id: JobId,
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

/// What the walk reads: the listing index newest first (a Redis stream read in reverse), and
/// the records of its jobs.
pub(crate) trait Index {
    type Record;
    type Error;

    /// Up to `n` entries strictly older than `after` (from the newest when `after` is
    /// `None`), newest first, and whether they ran out before `n`.
    async fn older(
        &mut self,
        after: Option<Cursor>,
        n: usize,
    ) -> Result<(Vec<Entry>, bool), Self::Error>;

    /// The records of `ids`, in order; `None` for a record that expired.
    async fn records(&mut self, ids: &[JobId]) -> Result<Vec<Option<Self::Record>>, Self::Error>;

    /// Removes from the index entries whose record expired.
    async fn forget(&mut self, gone: &[Entry]) -> Result<(), Self::Error>;
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
            cursor = Some(entry.at);
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

#[cfg(test)]
mod tests;
