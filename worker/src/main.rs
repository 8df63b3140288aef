//! `inferq-worker`: parse configuration, start logging, consume jobs until Ctrl-C or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = inferq_worker::Config::parse();
    inferq_shared::telemetry::init(config.log.log_json);
    inferq_worker::run(config, inferq_shared::shutdown::signal()).await
}
