//! The human-readable forms: a job record, the model table, durations, and the one way a
//! command prints an answer (`--json` prints the server's bodies verbatim instead).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use inferq_shared::JobStatus;
use inferq_shared::model::TensorSpec;
use inferq_shared::time::{now_ms, parse_rfc3339_ms};
use serde::Deserialize;
use serde_json::Value;

use crate::args::Global;
use crate::client::{ModelStatus, parse};
use crate::error::{CliError, Outcome};

/// Elements of an output shown inline; `--json` gives all of them.
const SHOWN_VALUES: usize = 8;

/// A job record as `GET /status/<id>` answers it.
#[derive(Debug, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) id: String,
    /// Every field but the id and the status may be missing from another version's answer:
    /// it is then shown as unknown (`?`).
    #[serde(default)]
    model: Option<String>,
    pub(crate) status: JobStatus,
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    #[serde(default)]
    attempts: Option<u32>,
    result: Option<JobResult>,
    error: Option<JobError>,
    /// While queued: jobs of the model ahead of it.
    #[serde(default)]
    pub(crate) queue_position: Option<u64>,
    /// While queued: the server's estimate of the time until it starts.
    #[serde(default)]
    pub(crate) eta_ms: Option<u64>,
    /// Pipeline jobs: the pipeline and its progress in seconds of input.
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default)]
    pub(crate) progress: Option<Progress>,
    /// 0 to 9; absent from servers before priorities.
    #[serde(default)]
    priority: Option<u8>,
}

/// A model job's outputs, or a speech pipeline's segments.
#[derive(Debug, Deserialize)]
struct JobResult {
    #[serde(default)]
    outputs: Vec<OutputTensor>,
    #[serde(default)]
    segments: Option<Vec<Segment>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Progress {
    pub(crate) done: f64,
    pub(crate) total: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Segment {
    start: f64,
    end: f64,
}

#[derive(Debug, Deserialize)]
struct OutputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Debug, Deserialize)]
struct JobError {
    code: String,
    message: String,
}

/// A value another version of the server may leave out: shown as `?` when it did.
pub(crate) fn known<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

/// Writes `text` to stdout. A closed pipe (`inferq models | head -1`) is not an error: the
/// reader has what it wanted.
pub(crate) fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A server body printed as one JSON document, newline-terminated.
pub(crate) fn emit_json(raw: &str) -> Result<(), CliError> {
    emit(&format!("{}\n", raw.trim_end()))
}

pub(crate) fn record(r: &JobRecord) -> String {
    let mut out = format!("job {}  {}\n", r.id, r.status);
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "  {name:<9} {value}");
    };
    field("model", &known(r.model.as_deref()));
    if let Some(p) = &r.pipeline {
        field("pipeline", p);
    }
    if let Some(p) = &r.progress {
        let total = p.total.map_or("?".to_owned(), |t| format!("{t:.1}"));
        field("progress", &format!("{:.1} / {total} s", p.done));
    }
    if let Some(created) = &r.created_at {
        field("created", created);
    }
    let ms = |t: &Option<String>| t.as_deref().and_then(parse_rfc3339_ms);
    let (created, started, finished) = (ms(&r.created_at), ms(&r.started_at), ms(&r.finished_at));
    if let Some(created) = created {
        // Until it starts (or ends unstarted, cancelled or past its deadline) it is waiting.
        field("queued", &span(created, started.or(finished)));
    }
    if let Some(started) = started {
        field("ran", &span(started, finished));
    }
    field("attempts", &known(r.attempts));
    if let Some(p) = r.priority {
        field("priority", &p.to_string());
    }
    if let Some(e) = &r.error {
        field("error", &format!("{}: {}", e.code, e.message));
    }
    if let Some(segments) = r.result.as_ref().and_then(|res| res.segments.as_ref()) {
        let shown: Vec<String> = segments
            .iter()
            .take(8)
            .map(|s| format!("{:.3}-{:.3}", s.start, s.end))
            .collect();
        let more = segments.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        field(
            "segments",
            &format!("{}  {}{tail}", segments.len(), shown.join(" ")),
        );
    }
    for o in r.result.iter().flat_map(|res| &res.outputs) {
        field(
            "output",
            &format!(
                "{}  {} {:?}  {}",
                o.name,
                o.datatype,
                o.shape,
                values(&o.data)
            ),
        );
    }
    out
}

/// From `from` to `to`, or to now (said so) while the span is still open.
fn span(from: u64, to: Option<u64>) -> String {
    match to {
        Some(to) => duration(Duration::from_millis(to.saturating_sub(from))),
        None => format!(
            "{} so far",
            duration(Duration::from_millis(now_ms().saturating_sub(from)))
        ),
    }
}

/// `340 ms`, `2.31 s`, `4m 05s`, `2h 03m`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    if ms < 1000 {
        format!("{ms} ms")
    } else if secs < 60 {
        format!("{:.2} s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// The first few elements of (possibly nested) `data`, flattened, with the count when cut.
fn values(data: &Value) -> String {
    fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            leaf => out.push(leaf),
        }
    }
    let mut leaves = Vec::new();
    flatten(data, &mut leaves);
    let shown: Vec<String> = leaves
        .iter()
        .take(SHOWN_VALUES)
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    if leaves.len() > SHOWN_VALUES {
        format!("[{}, …] ({} values)", shown.join(", "), leaves.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

pub(crate) fn models(models: &[ModelStatus]) -> String {
    if models.is_empty() {
        return "no models registered (no worker has announced one yet)\n".into();
    }
    let specs = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| format!("{} {} {:?}", s.name, s.datatype, s.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let header = ["NAME", "BATCHING", "WORKERS", "INPUTS", "OUTPUTS"].map(String::from);
    let rows: Vec<[String; 5]> = models
        .iter()
        .map(|m| {
            [
                m.info.name.clone(),
                if m.info.batching {
                    format!("yes (≤{})", m.info.max_batch_size)
                } else {
                    "no".into()
                },
                known(m.workers),
                specs(&m.info.inputs),
                specs(&m.info.outputs),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub(crate) fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in std::iter::once(header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(line, "{cell}{:pad$}  ", "");
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints a job record; a job that ended failed or cancelled makes the exit status 1.
pub(crate) fn report(
    global: &Global,
    (raw, record): (String, JobRecord),
) -> Result<Outcome, CliError> {
    if global.json {
        emit_json(&raw)?;
    } else {
        emit(&self::record(&record))?;
    }
    Ok(match record.status {
        JobStatus::Failed | JobStatus::Cancelled => Outcome::JobUnsuccessful,
        JobStatus::Scheduled | JobStatus::Queued | JobStatus::Running | JobStatus::Succeeded => {
            Outcome::Done
        }
    })
}

/// Prints `raw` as JSON, or its human form.
pub(crate) fn show<T: for<'de> Deserialize<'de>>(
    global: &Global,
    raw: &str,
    human: impl FnOnce(T) -> String,
) -> Result<Outcome, CliError> {
    if global.json {
        emit_json(raw)?;
    } else {
        emit(&human(parse(raw)?))?;
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(340)), "340 ms");
        assert_eq!(duration(Duration::from_millis(2314)), "2.31 s");
        assert_eq!(duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h 03m");
    }

    #[test]
    fn a_pipeline_record_shows_its_progress_and_segments() {
        let r: JobRecord = serde_json::from_value(serde_json::json!({
            "id": "j", "model": "silero_vad", "pipeline": "speech_segments",
            "status": "succeeded", "created_at": null, "started_at": null, "finished_at": null,
            "attempts": 1, "progress": {"done": 24.718, "total": 24.718},
            "result": {"segments": [{"start": 0.642, "end": 1.118}, {"start": 1.25, "end": 4.094}],
                       "duration": 24.718, "sample_rate": 16000},
            "error": null
        }))
        .unwrap();
        let text = record(&r);
        assert!(text.contains("pipeline  speech_segments"), "{text}");
        assert!(text.contains("progress  24.7 / 24.7 s"), "{text}");
        assert!(
            text.contains("segments  2  0.642-1.118 1.250-4.094"),
            "{text}"
        );
    }

    #[test]
    fn a_finished_record_shows_its_timings_and_outputs() {
        let r: JobRecord = serde_json::from_value(json!({
            "id": "6f1c", "model": "linear", "status": "succeeded",
            "created_at": "2026-11-21T06:20:10.147Z", "started_at": "2026-11-21T06:20:11.647Z",
            "finished_at": "2026-11-21T06:20:11.650Z", "attempts": 1, "priority": 7,
            "result": {"outputs": [{"name": "y", "shape": [3, 3], "datatype": "FP32",
                "data": [[1, 2, 3], [4, 5, 6], [7, 8, "NaN"]]}]},
            "error": null
        }))
        .unwrap();
        let text = record(&r);
        assert!(text.starts_with("job 6f1c  succeeded\n"), "{text}");
        assert!(text.contains("priority  7\n"), "{text}");
        assert!(text.contains("queued    1.50 s\n"), "{text}");
        assert!(text.contains("ran       3 ms\n"), "{text}");
        assert!(
            text.contains("output    y  FP32 [3, 3]  [1, 2, 3, 4, 5, 6, 7, 8, …] (9 values)"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_record_shows_its_error() {
        let r: JobRecord = serde_json::from_value(json!({
            "id": "6f1c", "model": "slow", "status": "failed",
            "created_at": "2026-11-21T06:20:10.147Z", "started_at": null,
            "finished_at": "2026-11-21T06:20:12.147Z", "attempts": 0, "result": null,
            "error": {"code": "deadline_exceeded", "message": "did not start in time"}
        }))
        .unwrap();
        let text = record(&r);
        assert!(text.contains("queued    2.00 s\n"), "{text}");
        assert!(!text.contains("ran"), "{text}");
        assert!(
            text.contains("error     deadline_exceeded: did not start in time"),
            "{text}"
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let header = ["A", "BB"].map(String::from);
        let rows = [["long".to_owned(), "x".to_owned()]];
        assert_eq!(table(&header, &rows), "A     BB\nlong  x\n");
    }
}
