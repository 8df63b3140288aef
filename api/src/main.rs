//! `inferq-api`: parse configuration, start logging, serve until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = inferq_api::Config::parse();
    inferq_shared::telemetry::init(config.log.log_json);
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    inferq_api::run(config, listener, inferq_shared::shutdown::signal()).await
}
