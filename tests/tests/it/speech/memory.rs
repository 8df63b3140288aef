//! Decoding and the model run stream: an hour-long recording keeps the worker small.

use std::time::Duration;

use crate::support::audio::{fixture, speech_worker, submit_audio};
use crate::support::spawn_app;

/// Resident memory of a process, in KiB (`VmRSS` or `VmHWM` from /proc/<pid>/status).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Decoding and the model run streaming: an hour-long recording does not make the worker
/// grow by more than ~100 MB (it holds a slice of the upload and a second or so of samples).
#[tokio::test]
async fn an_hour_long_recording_keeps_the_worker_small() {
    let app = spawn_app().await;
    let w = speech_worker(&app, &[]);
    // Warm up: sessions and buffers allocated.
    let id = submit_audio(&app, &fixture("speech.wav"), None).await;
    app.wait_done(&id, Duration::from_secs(60)).await;
    let before = memory_kib(w.child.id(), "VmRSS");
    let id = submit_audio(&app, &fixture("hour.flac"), None).await;
    let done = app.wait_done(&id, Duration::from_secs(600)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["duration"], 3600.0);
    let peak = memory_kib(w.child.id(), "VmHWM");
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 100,
        "the worker grew by {grew_mib} MiB for an hour of audio"
    );
}
