//! The queue protocol's Lua scripts driven directly through `Queue` against a real redis-server,
//! with no API and no worker processes: fencing tokens, release, cancel, idempotent start,
//! malformed entries, retirement, deadlines and attempt limits. The used-lanes set and the
//! Redis commands a submission costs are in `lanes.rs`, on the same fixture
//! (`support::queue`).

mod deliveries;
mod entries;
mod fencing;
