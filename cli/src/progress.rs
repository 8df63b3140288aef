//! Waiting for a job: follows its server-sent events (`GET /jobs/<id>/events`), or, from an API
//! without them or after the stream broke off, long-polls `GET /status/<id>?wait=…` in a loop;
//! with a spinner on the terminal showing the job's status (with its place in the queue and the
//! estimated start while it waits, a pipeline's progress while it runs) and the time waited.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use inferq_shared::JobId;

use crate::client::{Client, parse};
use crate::error::CliError;
use crate::render::JobRecord;

/// One long-poll. The server answers as soon as the job ends, so this only bounds how stale the
/// shown status (queued / running) can get; the server caps it at `INFERQ_MAX_WAIT_SECS`.
const POLL: Duration = Duration::from_secs(1);
/// Pause before asking again after a `503` (Redis briefly unavailable; `Retry-After: 1`).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Waits until the job is terminal and returns its record, raw and parsed.
pub(crate) async fn wait(client: &Client, id: JobId) -> Result<(String, JobRecord), CliError> {
    let spinner = spinner(id);
    let followed = crate::events::follow(client, id, |r| spinner.set_message(status_line(r))).await;
    let result = match followed {
        Ok(Some(done)) => Ok(done),
        Ok(None) => poll(client, id, &spinner).await,
        Err(e) => Err(e),
    };
    spinner.finish_and_clear();
    result
}

async fn poll(
    client: &Client,
    id: JobId,
    spinner: &ProgressBar,
) -> Result<(String, JobRecord), CliError> {
    // The first read answers at once, so the status shows before the first long-poll ends.
    let mut wait = None;
    loop {
        match client.status(id, wait.replace(POLL)).await {
            Ok(raw) => {
                let record: JobRecord = parse(&raw)?;
                if record.status.is_terminal() {
                    return Ok((raw, record));
                }
                spinner.set_message(status_line(&record));
            }
            // Redis failing over should not end a long wait; every other error does.
            Err(CliError::Server { status: 503, .. }) => {
                spinner.set_message("server unavailable, retrying");
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `queued (2 ahead, starts in ~1.40 s)`, `running`, ….
fn status_line(record: &JobRecord) -> String {
    let mut line = record.status.as_str().to_owned();
    if let Some(p) = &record.progress {
        match p.total {
            Some(total) if total > 0.0 => line.push_str(&format!(
                " {:.0}/{total:.0} s ({:.0}%)",
                p.done,
                100.0 * p.done / total
            )),
            _ => line.push_str(&format!(" {:.0} s", p.done)),
        }
    }
    if let Some(ahead) = record.queue_position {
        line.push_str(&format!(" ({ahead} ahead"));
        if let Some(eta) = record.eta_ms {
            line.push_str(&format!(
                ", starts in ~{}",
                crate::render::duration(Duration::from_millis(eta))
            ));
        }
        line.push(')');
    }
    line
}

/// A spinner on stderr, only when both stdout and stderr are terminals: output piped into a
/// file or another program stays free of control sequences.
fn spinner(id: JobId) -> ProgressBar {
    let interactive = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} job {prefix}  {msg:9}  {waited}")
        .expect("the template is valid")
        // indicatif's `{elapsed}` counts whole seconds; tenths show that the wait is alive.
        .with_key(
            "waited",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "waited {:.1}s", s.elapsed().as_secs_f64());
            },
        );
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(id.to_string())
        .with_message("…");
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
