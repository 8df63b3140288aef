//! One function per subcommand: call the API, print the human or the `--json` form, and say
//! how the command ended.

use clap::CommandFactory;
use inferq_shared::{JobId, JobStatus};
use serde::{Deserialize, Serialize};

use crate::args::{Cli, Command, Global, SubmitArgs};
use crate::client::{Client, parse};
use crate::error::{CliError, Outcome};
use crate::input::{Input, WireTensor};
use crate::ops;
use crate::progress;
use crate::render::{self, JobRecord, emit, emit_json};

pub(crate) async fn run(cli: Cli) -> Result<Outcome, CliError> {
    let global = cli.global;
    match cli.command {
        Command::Submit(args) => submit(&global, args).await,
        Command::Status { id } => status(&global, id).await,
        Command::Wait { id } => {
            let client = Client::new(&global)?;
            report(&global, progress::wait(&client, id).await?)
        }
        Command::Cancel { id } => cancel(&global, id).await,
        Command::Models => models(&global).await,
        Command::Workers => ops::workers(&global).await,
        Command::Speech {
            file,
            parameters,
            wait,
        } => ops::speech(&global, &file, parameters.as_deref(), wait).await,
        Command::Keys { command } => ops::keys(&global, command).await,
        Command::Queues => ops::queues(&global).await,
        Command::Dead { command } => ops::dead(&global, command).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "inferq", &mut out);
            emit(&String::from_utf8_lossy(&out))?;
            Ok(Outcome::Done)
        }
    }
}

/// The job body of `POST /jobs`.
#[derive(Debug, Serialize)]
struct JobBody<'a> {
    model: &'a str,
    inputs: Vec<WireTensor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Parameters>,
}

#[derive(Debug, Serialize)]
struct Parameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u8>,
}

/// The `202 Accepted` answer to a submission.
#[derive(Debug, Deserialize)]
struct Accepted {
    id: JobId,
}

async fn submit(global: &Global, args: SubmitArgs) -> Result<Outcome, CliError> {
    // Every input is read before anything is sent, so a bad file costs no request.
    let mut inputs = args
        .inputs
        .iter()
        .map(Input::load)
        .collect::<Result<Vec<_>, _>>()?;
    let client = Client::new(global)?;
    if inputs.iter().any(Input::needs_model) {
        let (_, models) = client.models().await?;
        // An unknown model leaves the defaults; the submission then gets `unknown_model`.
        let model = models.into_iter().find(|m| m.info.name == args.model);
        for input in &mut inputs {
            input.resolve(model.as_ref().map(|m| &m.info));
        }
    }
    let body = JobBody {
        model: &args.model,
        inputs: inputs.iter().map(Input::wire).collect(),
        parameters: (args.timeout_ms.is_some() || args.priority.is_some()).then_some(Parameters {
            timeout_ms: args.timeout_ms,
            priority: args.priority,
        }),
    };
    let body = serde_json::to_vec(&body)
        .map_err(|e| CliError::Usage(format!("cannot encode the job: {e}")))?;
    let raw = client.submit(body).await?;
    let accepted: Accepted = parse(&raw)?;
    if args.wait {
        return report(global, progress::wait(&client, accepted.id).await?);
    }
    if global.json {
        emit_json(&raw)?;
    } else {
        emit(&format!(
            "job {id} queued\n  follow it with: inferq wait {id}\n",
            id = accepted.id
        ))?;
    }
    Ok(Outcome::Done)
}

async fn status(global: &Global, id: JobId) -> Result<Outcome, CliError> {
    let client = Client::new(global)?;
    let raw = client.status(id, None).await?;
    let record: JobRecord = parse(&raw)?;
    report(global, (raw, record))
}

/// Prints a job record; a job that ended failed or cancelled makes the exit status 1.
pub(crate) fn report(
    global: &Global,
    (raw, record): (String, JobRecord),
) -> Result<Outcome, CliError> {
    if global.json {
        emit_json(&raw)?;
    } else {
        emit(&render::record(&record))?;
    }
    Ok(match record.status {
        JobStatus::Failed | JobStatus::Cancelled => Outcome::JobUnsuccessful,
        JobStatus::Scheduled | JobStatus::Queued | JobStatus::Running | JobStatus::Succeeded => {
            Outcome::Done
        }
    })
}

async fn cancel(global: &Global, id: JobId) -> Result<Outcome, CliError> {
    let client = Client::new(global)?;
    let raw = client.cancel(id).await?;
    if global.json {
        emit_json(&raw)?;
    } else {
        let record: JobRecord = parse(&raw)?;
        emit(&format!("job {} {}\n", record.id, record.status))?;
    }
    Ok(Outcome::Done)
}

async fn models(global: &Global) -> Result<Outcome, CliError> {
    let client = Client::new(global)?;
    let (raw, models) = client.models().await?;
    if global.json {
        emit_json(&raw)?;
    } else {
        emit(&render::models(&models))?;
    }
    Ok(Outcome::Done)
}
