//! Types, wire formats and the Redis queue protocol shared by the inferq API and workers.

#[cfg(feature = "audio")]
pub mod audio;
pub mod auth;
pub mod config;
pub mod datatype;
pub mod egress;
pub mod embedding;
pub mod job;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod payload;
pub mod pipeline;
#[cfg(test)]
mod proptests;
pub mod queue;
pub mod record;
pub mod shutdown;
pub mod telemetry;
pub mod tensor;
pub mod time;
pub mod trace;
pub mod webhook;

pub use datatype::DataType;
pub use job::{ErrorCode, JobId, JobStatus};
