//! The fixtures every test module shares: a private `redis-server` per test, the API (in
//! process, or as a second process), worker processes, clients that carry an API key, the
//! `eventually` poll, Redis key names from the shared crate, and the jobs tests submit.
//! A test module imports what it needs from here; the fixtures of one subject live in the
//! sub-modules `queue` (the queue driven directly), `servers` (input servers and a webhook
//! receiver), `audio` (the speech pipeline's recordings) and `texts` (the text embeddings
//! pipeline's texts and reference).

mod api_process;
mod app;
pub(crate) mod audio;
pub(crate) mod browser;
mod client;
mod eventually;
mod jobs;
mod keys;
mod paths;
pub(crate) mod queue;
mod redis_server;
pub(crate) mod servers;
pub(crate) mod texts;
pub(crate) mod topology;
mod worker;

pub(crate) use api_process::ApiProcess;
pub(crate) use app::{App, AppOptions, spawn_app, spawn_app_with};
pub(crate) use client::{Client, send};
pub(crate) use eventually::{eventually, eventually_blocking, eventually_every};
pub(crate) use jobs::{assert_close, linear_expected, linear_job, slow_job, submit_all};
pub(crate) use keys::{all_under, job_id};
pub(crate) use paths::{
    api_binary, cli_binary, free_port, log_dir, repo_root, test_models, test_venv, worker_binary,
};
pub(crate) use redis_server::Redis;
pub(crate) use worker::Worker;
