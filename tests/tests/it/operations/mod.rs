//! The operator's view: `GET /workers`, `GET /queues`, the dead letters, and `/metrics` on the
//! API and on a worker, checked with Prometheus's own `promtool`.

mod dead_letters;
mod overview;
mod probes;
