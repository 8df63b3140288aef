//! The job commands: `submit`, `speech`, `status`, `cancel` and `models`.

use inferq_shared::JobId;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::args::{Global, SubmitArgs};
use crate::client::{Client, parse};
use crate::error::{CliError, Outcome};
use crate::input::{Input, WireTensor};
use crate::progress;
use crate::render::{self, JobRecord, emit, emit_json, report};

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

pub(super) async fn submit(global: &Global, args: SubmitArgs) -> Result<Outcome, CliError> {
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

/// `inferq speech <file>`: the file goes as base64 in a JSON body.
pub(super) async fn speech(
    global: &Global,
    file: &std::path::Path,
    parameters: Option<&str>,
    wait: bool,
) -> Result<Outcome, CliError> {
    use base64::Engine;
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let parameters: serde_json::Value = match parameters {
        None => serde_json::json!({}),
        Some(text) => match serde_json::from_str(text) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return Err(CliError::Usage(
                    "--parameters must be a JSON object, e.g. '{\"threshold\": 0.6}'".into(),
                ));
            }
        },
    };
    let body = serde_json::json!({
        "pipeline": "speech_segments",
        "audio": {"data": base64::engine::general_purpose::STANDARD.encode(&bytes)},
        "parameters": parameters,
    });
    let client = Client::new(global)?;
    let raw = client
        .post_json("/jobs", serde_json::to_vec(&body).unwrap_or_default())
        .await?;
    let accepted: Accepted = parse(&raw)?;
    if wait {
        let done = progress::wait(&client, accepted.id).await?;
        return report(global, done);
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

pub(super) async fn status(global: &Global, id: JobId) -> Result<Outcome, CliError> {
    let client = Client::new(global)?;
    let raw = client.status(id, None).await?;
    let record: JobRecord = parse(&raw)?;
    report(global, (raw, record))
}

pub(super) async fn cancel(global: &Global, id: JobId) -> Result<Outcome, CliError> {
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

pub(super) async fn models(global: &Global) -> Result<Outcome, CliError> {
    let client = Client::new(global)?;
    if global.json {
        // What the server sent, whatever its version: nothing is read out of it.
        emit_json(&client.call(Method::GET, "/models").await?)?;
    } else {
        let (_, models) = client.models().await?;
        emit(&render::models(&models))?;
    }
    Ok(Outcome::Done)
}
