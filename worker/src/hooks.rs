//! Test hooks (cargo feature `test-hooks`, which release builds lack): job parameters that
//! make the worker crash or panic, standing in for a native crash, the OOM killer or a bug, so
//! the tests can prove what survives them.

use inferq_shared::job::{JobRequest, TestHook};

fn hook(req: &JobRequest<'_>) -> Option<TestHook> {
    req.parameters.as_ref().and_then(|p| p.test_hook)
}

/// Called on the inference thread while a job is decoded.
pub(crate) fn on_decode(req: &JobRequest<'_>) {
    match hook(req) {
        Some(TestHook::AbortWorker) => {
            tracing::error!("test hook: aborting the worker process");
            std::process::abort();
        }
        Some(TestHook::PanicInference) => panic!("test hook: panic on the inference thread"),
        _ => {}
    }
}

/// Called in the task that runs a batch, before it goes to an inference thread.
pub(crate) fn on_task(payloads: &[Vec<u8>]) {
    for p in payloads {
        if let Ok(req) = serde_json::from_slice::<JobRequest<'_>>(p)
            && hook(&req) == Some(TestHook::PanicTask)
        {
            panic!("test hook: panic in the batch task");
        }
    }
}
