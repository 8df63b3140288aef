//! `inferq-api`: parse configuration, start logging (and span export), serve until Ctrl-C or
//! SIGTERM, flush the last spans.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = inferq_api::Config::parse();
    let telemetry = inferq_shared::telemetry::init(config.log.log_json, "inferq-api")
        .context("setting up the OTLP span exporter")?;
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let result = inferq_api::run(config, listener, inferq_shared::shutdown::signal()).await;
    telemetry.shutdown();
    result
}
