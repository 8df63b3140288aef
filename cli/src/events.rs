//! Following a job over its server-sent events (`GET /jobs/<id>/events`): one request that the
//! server answers event by event, each carrying the job record, until the final state. An API
//! without the route (an older server) or a stream that breaks off leaves the caller to
//! long-poll instead.

use std::time::Duration;

use inferq_shared::JobId;

use crate::client::{Client, parse};
use crate::error::CliError;
use crate::render::JobRecord;

/// Longest silence on an open stream: the server sends a keep-alive comment every 15 s (by
/// default), so this much silence means a dead connection.
const SILENCE: Duration = Duration::from_secs(45);

/// Follows the job's events, calling `on_change` with every record before the final one.
/// Returns the final record, raw and parsed; `None` when there was no stream (an API without
/// the route) or it ended early: the caller long-polls instead.
pub(crate) async fn follow(
    client: &Client,
    id: JobId,
    mut on_change: impl FnMut(&JobRecord),
) -> Result<Option<(String, JobRecord)>, CliError> {
    let Some(mut response) = client.events(id).await? else {
        return Ok(None);
    };
    let mut buf = String::new();
    loop {
        while let Some(data) = next_data(&mut buf) {
            let record: JobRecord = parse(&data)?;
            if record.status.is_terminal() {
                return Ok(Some((data, record)));
            }
            on_change(&record);
        }
        let chunk = match tokio::time::timeout(SILENCE, response.chunk()).await {
            Ok(Ok(Some(bytes))) => bytes,
            // The end of the stream before a final state (the server shut down), a broken
            // connection or a silent one: the long-poll takes over.
            Ok(Ok(None) | Err(_)) | Err(_) => return Ok(None),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Takes the next complete event off `buf` and returns its `data:` (joined lines); comments
/// and events without data are skipped.
fn next_data(buf: &mut String) -> Option<String> {
    loop {
        let normalized = buf.replace("\r\n", "\n");
        if normalized.len() != buf.len() {
            *buf = normalized;
        }
        let end = buf.find("\n\n")?;
        let block: String = buf.drain(..end + 2).collect();
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            return Some(data.join("\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_whole_and_comments_skipped() {
        let mut buf = String::from(
            ": keep-alive\n\nevent: status\nid: 1\ndata: {\"a\":1}\n\nid: 2\r\ndata: {\"b\"",
        );
        assert_eq!(next_data(&mut buf).as_deref(), Some("{\"a\":1}"));
        assert_eq!(next_data(&mut buf), None, "an event still arriving");
        buf.push_str(":2}\r\n\r\n");
        assert_eq!(next_data(&mut buf).as_deref(), Some("{\"b\":2}"));
        assert!(buf.is_empty());
    }
}
