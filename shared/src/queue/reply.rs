//! Reading stream replies: `XREADGROUP` and `XAUTOCLAIM` into deliveries, `XRANGE` and
//! `XREVRANGE` into plain entries ([`stream_entries`]). One unreadable delivery
//! never spoils its neighbours: it comes back as [`Entry::Malformed`] for the worker to set
//! aside while the others run.

use std::collections::HashMap;
use std::fmt;

use redis::Value;

use super::QueueError;
use super::keys::entry;
use crate::egress::Allow;
use crate::job::{JobId, Priority};
use crate::trace::TraceParent;

/// Where a stream entry is: the partition and lane (priority) whose stream holds it and its id
/// there. Entry ids are unique within one stream only, so partition and lane are part of the
/// name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryRef {
    pub partition: u16,
    pub priority: Priority,
    pub id: String,
}

impl EntryRef {
    /// An entry of the default lane of the first partition (a pipeline's, or a test's).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            partition: 0,
            priority: Priority::DEFAULT,
            id: id.into(),
        }
    }

    /// The partition and lane of the entry's stream.
    pub fn lane(&self) -> (u16, Priority) {
        (self.partition, self.priority)
    }
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)?;
        if self.priority != Priority::DEFAULT {
            write!(f, "@priority{}", self.priority)?;
        }
        if self.partition != 0 {
            write!(f, "@partition{}", self.partition)?;
        }
        Ok(())
    }
}

/// A job as a worker receives it from the stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry: EntryRef,
    pub job: JobId,
    pub payload: Vec<u8>,
    /// The trace the job joins, from its submission's `traceparent` (an unreadable one is
    /// dropped: it never makes the entry malformed).
    pub trace: Option<TraceParent>,
    /// The exceptions to the address guard the job was submitted under
    /// ([`Queue::with_fetch_allow`](super::Queue::with_fetch_allow)): its inputs are fetched
    /// under these, and no others.
    pub fetch_allow: Allow,
}

/// One stream entry of a reply.
#[derive(Debug, Clone)]
pub enum Entry {
    Job(Delivery),
    /// An entry without a readable job id or payload; `job` is its id when that much could be
    /// read.
    Malformed {
        entry: EntryRef,
        job: Option<JobId>,
    },
}

impl Entry {
    /// Where the entry is.
    pub fn entry(&self) -> &EntryRef {
        match self {
            Self::Job(d) => &d.entry,
            Self::Malformed { entry, .. } => entry,
        }
    }
}

/// `[[stream, entries], ...]` (RESP2) or `{stream: entries}` (RESP3); nil when nothing arrived.
pub(crate) fn stream_pairs(reply: Value) -> Result<Vec<(String, Value)>, QueueError> {
    let pairs = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop().unwrap_or(Value::Nil);
                    Ok((kv.pop().unwrap_or(Value::Nil), entries))
                }
                _ => Err(QueueError::Protocol("stream reply item is not a pair")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Map(kv) => kv,
        _ => return Err(QueueError::Protocol("stream reply is not an array")),
    };
    pairs
        .into_iter()
        .map(|(k, v)| Ok((string(k)?, v)))
        .collect()
}

/// `[[entry id, [field, value, ...]], ...]` of the lane of `priority` into entries. An entry whose fields are gone
/// (deleted after it was delivered) carries nothing to run and is skipped; an entry without an
/// id cannot even be acknowledged and is skipped too (Redis never sends one).
pub(crate) fn parse_entries(
    entries: Value,
    (partition, priority): (u16, Priority),
) -> Result<Vec<Entry>, QueueError> {
    let Value::Array(entries) = entries else {
        return Err(QueueError::Protocol("stream entries are not an array"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(mut parts) = e else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let Ok(id) = string(parts.pop().unwrap_or(Value::Nil)) else {
            continue;
        };
        let entry_id = EntryRef {
            partition,
            priority,
            id,
        };
        let fields = match fields {
            Value::Array(fields) => fields,
            Value::Nil => continue,
            _ => {
                out.push(Entry::Malformed {
                    entry: entry_id,
                    job: None,
                });
                continue;
            }
        };
        let mut map: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(3);
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let (Value::BulkString(k), Value::BulkString(v)) = (k, v) {
                map.insert(k, v);
            }
        }
        let job = map
            .get(entry::ID.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok());
        let payload = map.remove(entry::PAYLOAD.as_bytes());
        let trace = map
            .get(entry::TRACEPARENT.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(TraceParent::parse);
        // Written by the API from a list it parsed; an unreadable one allows nothing.
        let fetch_allow = map
            .get(entry::FETCH_ALLOW.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        out.push(match (job, payload) {
            (Some(job), Some(payload)) if !payload.is_empty() => Entry::Job(Delivery {
                entry: entry_id,
                job,
                payload,
                trace,
                fetch_allow,
            }),
            (job, _) => Entry::Malformed {
                entry: entry_id,
                job,
            },
        });
    }
    Ok(out)
}

pub(crate) fn string(v: Value) -> Result<String, QueueError> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b).map_err(|_| QueueError::Protocol("non-UTF-8 string"))
        }
        Value::SimpleString(s) => Ok(s),
        _ => Err(QueueError::Protocol("expected a string")),
    }
}

/// A reply value as text (bulk and simple strings, integers).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A stream entry: its id and its fields.
pub(crate) type RawEntry = (String, HashMap<String, String>);

/// `[[id, [field, value, ...]], ...]` into entries.
pub(crate) fn stream_entries(reply: Value) -> Result<Vec<RawEntry>, QueueError> {
    let Value::Array(items) = reply else {
        return Err(QueueError::Protocol("stream range is not an array"));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            return Err(QueueError::Protocol("stream entry is not a pair"));
        };
        if pair.len() != 2 {
            return Err(QueueError::Protocol("stream entry is not a pair"));
        }
        let fields = pair.pop().unwrap_or(Value::Nil);
        let id = text(&pair[0]).ok_or(QueueError::Protocol("stream entry id"))?;
        let mut map = HashMap::new();
        if let Value::Array(kv) = fields {
            for f in kv.chunks_exact(2) {
                if let (Some(k), Some(v)) = (text(&f[0]), text(&f[1])) {
                    map.insert(k, v);
                }
            }
        }
        out.push((id, map));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_malformed_entry_does_not_spoil_its_neighbours() {
        let id = JobId::new();
        let good = |e: &str| {
            Value::Array(vec![
                bulk(e),
                Value::Array(vec![
                    bulk("id"),
                    bulk(&id.to_string()),
                    bulk("p"),
                    bulk("{}"),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            good("1-0"),
            Value::Array(vec![
                bulk("2-0"),
                Value::Array(vec![bulk("id"), bulk("not-a-uuid")]),
            ]),
            Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("id"), bulk(&id.to_string())]),
            ]),
            Value::Array(vec![bulk("4-0"), Value::Nil]),
            good("5-0"),
        ]);
        let got = parse_entries(reply, (0, Priority::DEFAULT)).unwrap();
        let kinds: Vec<String> = got
            .iter()
            .map(|e| match e {
                Entry::Job(d) => format!("job {}", d.entry),
                Entry::Malformed { entry, job } => format!("bad {entry} {}", job.is_some()),
            })
            .collect();
        assert_eq!(
            kinds,
            ["job 1-0", "bad 2-0 false", "bad 3-0 true", "job 5-0"]
        );
    }

    #[test]
    fn a_traceparent_is_read_and_a_bad_one_dropped() {
        let id = JobId::new().to_string();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let entry = |e: &str, tp: &str| {
            Value::Array(vec![
                bulk(e),
                Value::Array(vec![
                    bulk("id"),
                    bulk(&id),
                    bulk("p"),
                    bulk("{}"),
                    bulk("traceparent"),
                    bulk(tp),
                ]),
            ])
        };
        let got = parse_entries(
            Value::Array(vec![entry("1-0", tp), entry("2-0", "nope")]),
            (0, Priority::HIGHEST),
        );
        let traces: Vec<Option<String>> = got
            .unwrap()
            .into_iter()
            .map(|e| match e {
                Entry::Job(d) => d.trace.map(|t| t.to_string()),
                Entry::Malformed { .. } => panic!("a bad traceparent made the entry malformed"),
            })
            .collect();
        assert_eq!(traces, [Some(tp.to_owned()), None]);
    }
}
