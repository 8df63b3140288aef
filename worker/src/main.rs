//! `inferq-worker`: parse configuration, start logging (and span export), consume jobs until
//! Ctrl-C or SIGTERM, flush the last spans.

use anyhow::Context;
use clap::Parser;

/// mimalloc in place of the system allocator: every request and job allocates and frees
/// many small buffers across threads, which glibc malloc serves at a measurable cost
/// (BENCHMARKS.md, "Per-job cost").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = inferq_worker::Config::parse();
    let telemetry = inferq_shared::telemetry::init(config.log.log_json, "inferq-worker")
        .context("setting up the OTLP span exporter")?;
    let result = inferq_worker::run(config, inferq_shared::shutdown::signal()).await;
    telemetry.shutdown();
    result
}
