//! Test hooks (cargo feature `test-hooks`, which release builds lack): job parameters that
//! make the worker crash or panic, standing in for a native crash, the OOM killer or a bug, so
//! the tests can prove what survives them.

use inferq_shared::job::{JobParameters, JobRequest, TestHook};
use inferq_shared::payload;

/// Called on the inference thread while a job is decoded.
pub(crate) fn on_decode(parameters: Option<&JobParameters>) {
    match parameters.and_then(|p| p.test_hook) {
        Some(TestHook::AbortWorker) => {
            tracing::error!("test hook: aborting the worker process");
            std::process::abort();
        }
        Some(TestHook::PanicInference) => panic!("test hook: panic on the inference thread"),
        Some(TestHook::SlowDecode) => std::thread::sleep(std::time::Duration::from_secs(2)),
        _ => {}
    }
}

/// Called in the task that runs a batch, before it goes to an inference thread.
pub(crate) fn on_task(payloads: &[Vec<u8>]) {
    for p in payloads {
        let parameters = match payload::decode_job(p) {
            Ok((header, _)) => header.parameters,
            Err(_) => serde_json::from_slice::<JobRequest<'_>>(p)
                .ok()
                .and_then(|r| r.parameters),
        };
        if parameters.and_then(|p| p.test_hook) == Some(TestHook::PanicTask) {
            panic!("test hook: panic in the batch task");
        }
    }
}
