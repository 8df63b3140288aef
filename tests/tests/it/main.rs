//! inferq integration tests: a real `redis-server` per test, the real API (in-process, or as a
//! process of its own) and real worker processes running real ONNX models. Every fixture is in
//! `support`; a subject of several concepts is a folder with one file per concept.

mod auth;
mod batching;
mod cli;
mod dashboard;
mod dashboard_keys;
mod datatypes;
mod demo;
mod docs;
mod embeddings;
mod events;
mod faults;
mod inputs_by_url;
mod job_api;
mod jobs;
mod lanes;
mod lifecycle;
mod limits;
mod logs;
mod oip;
mod openai;
mod openapi;
mod operations;
mod priority;
mod protocol;
mod quota;
mod speech;
mod support;
mod tenant_count;
mod tenant_quota;
mod tls;
mod topologies;
mod trace;
mod uploads;
mod validation;
mod webhooks;
