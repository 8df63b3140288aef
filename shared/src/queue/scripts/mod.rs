//! The atomic steps of a job's life, one Lua script each (`lua/*.lua`, whose headers document
//! their KEYS and ARGV). Field names are written into each script from `keys.rs` when it loads.
//! [`submit`] enqueues jobs; [`attempts`] is a worker's side (start, renew, hand back, record)
//! and cancellation; [`pipeline`] the pipeline jobs with their uploads.

mod attempts;
mod pipeline;
mod submit;

use std::time::Duration;

use redis::Script;

use super::keys::lua_script;

pub use attempts::{Cancelled, Completion, Outcome};
pub use pipeline::PipelineSubmission;
pub use submit::{NewJob, Submitted};

fn script(body: &str) -> Script {
    lua_script(body)
}

/// A script that changes job states, with the webhook outbox (`outbox.lua`) in front of it.
pub(crate) fn with_outbox(body: &str) -> Script {
    lua_script(&format!("{}\n{body}", include_str!("../lua/outbox.lua")))
}

/// How long records are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// How long a terminal job record stays readable.
    pub result_ttl: Duration,
}

impl Retention {
    pub(crate) fn secs(self) -> u64 {
        self.result_ttl.as_secs().max(1)
    }
}
