//! The atomic steps of a job's life, one Lua script each (`lua/*.lua`, whose headers document
//! their KEYS and ARGV). Field names and ARGV positions are written into each script when it
//! loads ([`lua`](super::lua)).
//! [`submit`] enqueues jobs; [`attempts`] is a worker's side (start, renew, hand back, record);
//! [`malformed`] sets unreadable entries aside; [`cancel`] cancels; [`pipeline`] the pipeline
//! jobs with their uploads.

mod attempts;
mod cached;
mod cancel;
mod malformed;
mod pipeline;
mod promote;
mod submit;

use std::time::Duration;

use redis::Script;

use super::lua::{Argv, ENDING, OUTBOX, lua_script_with};

pub(crate) use attempts::by_lane as by_partition;
pub use attempts::{Completion, Outcome};
pub use cancel::Cancelled;
pub use pipeline::PipelineSubmission;
pub use submit::{NewJob, Submitted};

/// A script whose ARGV has the names `argv`.
fn script(body: &str, argv: Argv) -> Script {
    lua_script_with(&[], body, argv)
}

/// A script that ends jobs, with the end of a job (`ending.lua`) and the outbox it calls in
/// front of it.
pub(crate) fn with_ending(body: &str, argv: Argv) -> Script {
    lua_script_with(&[OUTBOX, ENDING], body, argv)
}

/// How long records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a terminal job record stays readable.
    pub result_ttl: Duration,
}

impl Retention {
    /// Before every record named its own retention, the worker kept a finished record this
    /// long unless told otherwise; it still does for such records.
    pub const DEFAULT: Self = Self {
        result_ttl: Duration::from_secs(86_400),
    };

    pub(crate) fn secs(self) -> u64 {
        self.result_ttl.as_secs().max(1)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Every script of this module, for the test that loads them all.
#[cfg(test)]
pub(crate) fn all() -> Vec<&'static Script> {
    use std::sync::LazyLock;
    vec![
        LazyLock::force(&attempts::START),
        LazyLock::force(&attempts::COMPLETE),
        LazyLock::force(&attempts::HEARTBEAT),
        LazyLock::force(&attempts::RELEASE),
        LazyLock::force(&cancel::CANCEL),
        LazyLock::force(&malformed::MALFORMED),
        LazyLock::force(&pipeline::SUBMIT_PIPELINE),
        LazyLock::force(&pipeline::PROGRESS),
        LazyLock::force(&submit::SUBMIT),
        LazyLock::force(&promote::PROMOTE),
        LazyLock::force(&cached::CACHED),
    ]
}
