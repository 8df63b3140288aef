//! `inferq-worker`: parse configuration, start logging (and span export), consume jobs until
//! Ctrl-C or SIGTERM, flush the last spans.

use anyhow::Context;
use clap::Parser;

/// mimalloc in place of the system allocator: every request and job allocates and frees
/// many small buffers across threads, which glibc malloc serves at a measurable cost
/// (docs/benchmarks.md, "Per-job cost").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One runtime thread unless `TOKIO_WORKER_THREADS` says otherwise: inference runs on the
/// worker's own threads (and decoding on tokio's blocking pool), so the runtime only waits on
/// Redis and HTTP, which one thread does at a fraction of the CPU that threads handing work to
/// each other cost (docs/benchmarks.md, "Per-job cost").
fn main() -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(1);
    }
    runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let config = inferq_worker::Config::parse();
    let telemetry = inferq_shared::telemetry::init(config.log.log_json, "inferq-worker")
        .context("setting up the OTLP span exporter")?;
    let result = inferq_worker::run(config, inferq_shared::shutdown::signal()).await;
    telemetry.shutdown();
    result
}
