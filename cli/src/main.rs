//! `inferq`: the command-line client of the inferq HTTP API. Parses the command line, runs one
//! command, and turns its outcome into the documented exit status.

mod args;
mod client;
mod commands;
mod error;
mod events;
mod input;
mod progress;
mod render;

use std::process::ExitCode;

use clap::Parser;

use crate::error::Outcome;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Usage errors exit 2 here, through clap.
    let cli = args::Cli::parse();
    match commands::run(cli).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::JobUnsuccessful) => ExitCode::from(1),
        Err(e) => {
            eprintln!("inferq: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
