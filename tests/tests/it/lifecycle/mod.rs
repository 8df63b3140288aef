//! Shutdown, recovery and cancellation: what a worker holds is finished or handed back, never
//! lost; a job ends once, however it ends.

mod cancellation;
mod recovery;
mod shutdown;
