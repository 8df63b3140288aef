//! `inferq-api`: parse configuration, start logging (and span export), serve until Ctrl-C or
//! SIGTERM, flush the last spans; or, with `keys …`, manage API keys in Redis and exit.

use anyhow::Context;
use clap::Parser;

/// mimalloc in place of the system allocator: every request and job allocates and frees
/// many small buffers across threads, which glibc malloc serves at a measurable cost
/// (docs/benchmarks.md, "Per-job cost").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "inferq-api", version, about = "inferq HTTP API")]
struct Cli {
    #[command(flatten)]
    config: inferq_api::Config,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Manage API keys (stored hashed in Redis).
    #[command(subcommand)]
    Keys(inferq_api::routes::keys::KeysCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { config, command } = Cli::parse();
    if let Some(Command::Keys(cmd)) = command {
        return inferq_api::routes::keys::run_command(&config, cmd).await;
    }
    let telemetry = inferq_shared::telemetry::init(config.log.log_json, "inferq-api")
        .context("setting up the OTLP span exporter")?;
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let result = inferq_api::run(config, listener, inferq_shared::shutdown::signal()).await;
    telemetry.shutdown();
    result
}
