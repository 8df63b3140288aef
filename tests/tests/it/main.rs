//! inferq integration tests: a real `redis-server` per test, the real API (in-process) and real
//! worker processes running real ONNX models.

mod auth;
mod batching;
mod cli;
mod dashboard;
mod dashboard_keys;
mod datatypes;
mod demo;
mod docs;
mod events;
mod events_cli;
mod faults;
mod helpers;
mod inputs_by_url;
mod job_api;
mod jobs;
mod lanes;
mod lifecycle;
mod limits;
mod listing;
mod local_servers;
mod logs;
mod oip;
mod openapi;
mod operations;
mod priority;
mod protocol;
mod quota;
mod speech;
mod tenant_count;
mod tenant_quota;
mod tls;
mod trace;
mod uploads;
mod validation;
mod webhooks;
