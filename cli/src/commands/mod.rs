//! One function per subcommand: call the API, print the human or the `--json` form, and say
//! how the command ended. This module dispatches; each file holds one group of commands.

mod dead;
mod jobs;
mod keys;
mod operations;

use clap::CommandFactory;

use crate::args::{Cli, Command};
use crate::client::Client;
use crate::error::{CliError, Outcome};
use crate::progress;
use crate::render::{self, emit};

pub(crate) async fn run(cli: Cli) -> Result<Outcome, CliError> {
    let global = cli.global;
    match cli.command {
        Command::Submit(args) => jobs::submit(&global, args).await,
        Command::Status { id } => jobs::status(&global, id).await,
        Command::Wait { id } => {
            let client = Client::new(&global)?;
            render::report(&global, progress::wait(&client, id).await?)
        }
        Command::Cancel { id } => jobs::cancel(&global, id).await,
        Command::Models => jobs::models(&global).await,
        Command::Workers => operations::workers(&global).await,
        Command::Speech {
            file,
            parameters,
            wait,
        } => jobs::speech(&global, &file, parameters.as_deref(), wait).await,
        Command::Keys { command } => keys::keys(&global, command).await,
        Command::Queues => operations::queues(&global).await,
        Command::Dead { command } => dead::dead(&global, command).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "inferq", &mut out);
            emit(&String::from_utf8_lossy(&out))?;
            Ok(Outcome::Done)
        }
    }
}
