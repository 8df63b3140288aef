//! The cursor walk held against an in-memory model of the listing index: a stream whose entry
//! ids are (ms, seq), many jobs to a millisecond, changed by submissions, status changes,
//! expiries and sweeps interleaved with every read of a walk.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use proptest::prelude::*;

use super::{Cursor, Entry, Index, Reach, page};
use crate::job::JobId;

/// A record as the walk sees it: its job, status and model (small numbers stand for both).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rec {
    id: JobId,
    status: u8,
    model: u8,
}

#[derive(Debug, Clone)]
enum Op {
    /// A new job, written at this time of Redis's clock (a time behind the stream's last entry
    /// gets the next id of that entry's millisecond, as `XADD *` does).
    Submit { at: u64, status: u8, model: u8 },
    /// The job picked (by position among all jobs ever made) takes this status.
    Change { pick: usize, status: u8 },
    /// The job picked loses its record (its retention ran out).
    Expire { pick: usize },
    /// The sweeper drops the index entries whose record expired.
    Sweep,
}

/// The index as a Redis stream keeps it (entry ids ascending), the records, and the changes
/// still to come, a few applied before every call the walk makes.
struct Model {
    index: BTreeMap<Cursor, JobId>,
    records: HashMap<JobId, Rec>,
    all: Vec<(Cursor, JobId)>,
    pending: VecDeque<Op>,
    per_call: usize,
    filter: (Option<u8>, Option<u8>),
    /// Jobs that stopped matching the filter, or expired, at some moment of the walk.
    broken: HashSet<JobId>,
}

impl Model {
    fn add(&mut self, at: u64, status: u8, model: u8) -> JobId {
        let id = JobId::new();
        let last = self.all.last().map(|(c, _)| *c);
        let at = match last {
            Some(l) if at <= l.ms => Cursor {
                ms: l.ms,
                seq: l.seq + 1,
            },
            _ => Cursor { ms: at, seq: 0 },
        };
        self.index.insert(at, id);
        self.records.insert(id, Rec { id, status, model });
        self.all.push((at, id));
        id
    }

    fn matches(&self, r: &Rec) -> bool {
        self.filter.0.is_none_or(|s| s == r.status) && self.filter.1.is_none_or(|m| m == r.model)
    }

    fn apply_some(&mut self) {
        for _ in 0..self.per_call {
            let Some(op) = self.pending.pop_front() else {
                return;
            };
            match op {
                Op::Submit { at, status, model } => {
                    let id = self.add(at, status, model);
                    // Not there when the walk began: nothing is promised of it.
                    self.broken.insert(id);
                }
                Op::Change { pick, status } if !self.all.is_empty() => {
                    let id = self.all[pick % self.all.len()].1;
                    if let Some(mut r) = self.records.get(&id).copied() {
                        r.status = status;
                        if !self.matches(&r) {
                            self.broken.insert(id);
                        }
                        self.records.insert(id, r);
                    }
                }
                Op::Expire { pick } if !self.all.is_empty() => {
                    let id = self.all[pick % self.all.len()].1;
                    self.records.remove(&id);
                    self.broken.insert(id);
                }
                Op::Sweep => {
                    let records = &self.records;
                    self.index.retain(|_, id| records.contains_key(id));
                }
                Op::Change { .. } | Op::Expire { .. } => {}
            }
        }
    }
}

impl Index for Model {
    type Record = Rec;
    type Error = ();

    async fn older(&mut self, after: Option<Cursor>, n: usize) -> Result<(Vec<Entry>, bool), ()> {
        self.apply_some();
        let older: Vec<Entry> = self
            .index
            .iter()
            .rev()
            .filter(|(at, _)| after.is_none_or(|c| **at < c))
            .take(n)
            .map(|(at, id)| Entry { at: *at, id: *id })
            .collect();
        let exhausted = older.len() < n;
        Ok((older, exhausted))
    }

    async fn records(&mut self, ids: &[JobId]) -> Result<Vec<Option<Rec>>, ()> {
        self.apply_some();
        Ok(ids.iter().map(|id| self.records.get(id).copied()).collect())
    }

    async fn forget(&mut self, gone: &[Entry]) -> Result<(), ()> {
        self.apply_some();
        for e in gone {
            self.index.remove(&e.at);
        }
        Ok(())
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..12, 0u8..3, 0u8..3).prop_map(|(at, status, model)| Op::Submit { at, status, model }),
        3 => (any::<usize>(), 0u8..3).prop_map(|(pick, status)| Op::Change { pick, status }),
        2 => any::<usize>().prop_map(|pick| Op::Expire { pick }),
        1 => Just(Op::Sweep),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every job that was there when the walk began and matched the filters all through it is
    /// listed exactly once; nothing is listed twice; the listing is newest first; the walk ends
    /// only when nothing older is left.
    #[test]
    fn a_cursor_walk_lists_every_job_that_matched_throughout_once(
        jobs in prop::collection::vec((0u64..12, 0u8..3, 0u8..3), 0..150),
        ops in prop::collection::vec(op(), 0..80),
        per_call in 0usize..3,
        limits in prop::collection::vec(1usize..9, 1..6),
        step in 1usize..12,
        budget in 1usize..40,
        status in prop::option::of(0u8..3),
        model in prop::option::of(0u8..3),
    ) {
        let mut m = Model {
            index: BTreeMap::new(),
            records: HashMap::new(),
            all: Vec::new(),
            pending: ops.into(),
            per_call,
            filter: (status, model),
            broken: HashSet::new(),
        };
        for (at, s, md) in jobs {
            m.add(at, s, md);
        }
        let promised: Vec<JobId> = m
            .records
            .values()
            .filter(|r| m.matches(r))
            .map(|r| r.id)
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let reach = Reach { step, budget };
        let mut listed: Vec<Rec> = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let limit = limits[pages % limits.len()];
            let filter = m.filter;
            let (got, next) = rt
                .block_on(page(&mut m, limit, cursor, reach, move |r: &Rec| {
                    filter.0.is_none_or(|s| s == r.status)
                        && filter.1.is_none_or(|md| md == r.model)
                }))
                .unwrap();
            prop_assert!(got.len() <= limit);
            listed.extend(got);
            pages += 1;
            prop_assert!(pages < 10_000, "the walk does not end");
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let at: HashMap<JobId, Cursor> = m.all.iter().map(|(at, id)| (*id, *at)).collect();
        let order: Vec<Cursor> = listed.iter().map(|r| at[&r.id]).collect();
        for pair in order.windows(2) {
            prop_assert!(pair[0] > pair[1], "not newest first, or listed twice: {:?}", pair);
        }
        let seen: HashSet<JobId> = listed.iter().map(|r| r.id).collect();
        for id in promised {
            if !m.broken.contains(&id) {
                prop_assert!(seen.contains(&id), "{} matched all through and was not listed", id);
            }
        }
    }
}

/// A page that ends inside a run of jobs written in one millisecond resumes inside it, however
/// long the run is compared with a step (what made listings end early when the index was a
/// sorted set scored by milliseconds).
#[test]
fn pages_resume_inside_a_run_of_equal_creation_times() {
    let mut m = Model {
        index: BTreeMap::new(),
        records: HashMap::new(),
        all: Vec::new(),
        pending: VecDeque::new(),
        per_call: 0,
        filter: (Some(1), None),
        broken: HashSet::new(),
    };
    for i in 0..500 {
        m.add(7, (i % 2) as u8, 0);
    }
    m.add(3, 1, 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mut listed, mut cursor) = (0, None);
    loop {
        let (got, next) = rt
            .block_on(page(&mut m, 50, cursor, Reach::for_limit(50), |r: &Rec| {
                r.status == 1
            }))
            .unwrap();
        listed += got.len();
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(listed, 251);
}
