//! The command line: global connection options and one subcommand per API feature. Each doc
//! comment is the `--help` text of its command or flag.

use std::fmt;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use inferq_shared::JobId;

use crate::input::InputArg;

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Command-line client of inferq, the job-queue backed ONNX inference service.
///
/// Exit status: 0 success; 1 a job that ended failed or cancelled, or an error answer from the
/// server; 2 a usage error (bad arguments or input files); 3 the server cannot be reached or
/// refused the credentials (401/403).
#[derive(Debug, Parser)]
#[command(name = "inferq", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Base URL of the inferq API (plain HTTP).
    #[arg(
        long,
        env = "INFERQ_URL",
        default_value = DEFAULT_URL,
        value_parser = parse_base_url,
        global = true
    )]
    pub(crate) url: String,
    /// API key, sent as `Authorization: Bearer <key>`. Prefer the environment variable: a flag
    /// is visible to other users in the process list.
    #[arg(long, env = "INFERQ_API_KEY", hide_env_values = true, global = true)]
    pub(crate) api_key: Option<ApiKey>,
    /// Print the server's JSON answer verbatim, as one JSON document, instead of the
    /// human-readable form.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Submit an inference job (`POST /jobs`) and print its id, or with --wait its result.
    Submit(SubmitArgs),
    /// Print a job's record (`GET /status/<id>`); exits 1 if the job failed or was cancelled.
    Status {
        /// Job id, as `submit` printed it.
        id: JobId,
    },
    /// Wait for a job to finish, showing its status and the time waited, then print its
    /// record; exits 1 if the job failed or was cancelled.
    Wait {
        /// Job id, as `submit` printed it.
        id: JobId,
    },
    /// Cancel a queued or running job (`DELETE /jobs/<id>`).
    Cancel {
        /// Job id, as `submit` printed it.
        id: JobId,
    },
    /// List the registered models (`GET /models`): batching, live workers, inputs, outputs.
    Models,
    /// Find the speech in a recording (`POST /jobs` with the `speech_segments` pipeline): WAV,
    /// FLAC, MP3 or Ogg Vorbis. Prints the job id, or with --wait its segments.
    Speech {
        /// The audio file.
        file: std::path::PathBuf,
        /// Pipeline parameters as a JSON object, e.g. '{"threshold": 0.6}' (see `GET
        /// /pipelines`).
        #[arg(long, value_name = "JSON")]
        parameters: Option<String>,
        /// Wait for the job (a progress line on a terminal), then print its record; exits 1 if
        /// it failed or was cancelled.
        #[arg(long)]
        wait: bool,
    },
    /// API keys (admin): create, list, revoke.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// List the live workers (`GET /workers`): host, pid, models, busy threads, job counts.
    Workers,
    /// Show each model's queue (`GET /queues`): waiting, running, oldest wait, jobs finished in
    /// the last minute, workers; then the dead-letter count and the latest failures.
    Queues,
    /// Dead letters: jobs that used up their attempts, and unreadable queue entries.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Print a shell completion script to stdout (install it where your shell looks for one).
    Completions {
        /// The shell to complete in.
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a key (`POST /keys`); it is printed once and cannot be shown again.
    Create {
        /// The tenant the key's jobs belong to.
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes: submit, read, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// A name to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        /// The tenant's most jobs waiting or running, for requests with this key (default: the
        /// API's INFERQ_TENANT_MAX_QUEUED); 0 = no limit; at most 1,000,000,000.
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
        max_queued: Option<u64>,
        /// The tenant's submissions per second, for requests with this key (default: the
        /// API's INFERQ_TENANT_RATE); 0 = no limit.
        #[arg(long)]
        rate: Option<f64>,
        /// The tenant's burst of submissions (default: the API's INFERQ_TENANT_BURST).
        #[arg(long)]
        burst: Option<f64>,
    },
    /// List the keys (`GET /keys`), never the keys themselves.
    List,
    /// Revoke a key by its id (`DELETE /keys/<id>`).
    Revoke {
        /// The key's id, as `keys create` or `keys list` printed it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadCommand {
    /// List dead letters, newest first (`GET /dead`).
    List {
        /// Most entries to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Show the page after this cursor (printed under the previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Only this tenant's dead letters.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Run a dead letter's job again under the same id (`POST /dead/<id>/retry`).
    Retry {
        /// The job id (or the dead letter's dead_id).
        id: String,
    },
    /// Delete a dead letter (`DELETE /dead/<id>`).
    Delete {
        /// The job id (or the dead letter's dead_id).
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// Model name (see `inferq models`).
    pub(crate) model: String,
    /// One input tensor as NAME=SOURCE; repeat for each input. SOURCE is inline JSON (starting
    /// with `[` or `{`, or a bare number), a `.npy` file (little-endian f2 f4 f8 i1 i2 i4 i8 u1
    /// u2 u4 u8 b1, C order), or a JSON file. JSON is a tensor object `{"shape", "datatype",
    /// "data"}` or a bare (nested) array of numbers, whose shape comes from its nesting and
    /// whose datatype is the model's (FP32 if the model does not say).
    #[arg(short, long = "input", value_name = "NAME=SOURCE", required = true)]
    pub(crate) inputs: Vec<InputArg>,
    /// Wait for the job to finish (a spinner on a terminal), then print its record; exits 1 if
    /// the job failed or was cancelled.
    #[arg(long)]
    pub(crate) wait: bool,
    /// The job must start within N milliseconds of submission, or it fails with
    /// `deadline_exceeded` without running.
    #[arg(long, value_name = "N")]
    pub(crate) timeout_ms: Option<u64>,
    /// Priority 0 to 9 (default 5): among the model's waiting jobs, higher starts sooner.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=9))]
    pub(crate) priority: Option<u8>,
}

/// The API key. Redacted in `Debug`, so it cannot leak into a log or an error message.
#[derive(Clone)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FromStr for ApiKey {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A header value cannot hold control characters; saying so beats a failed request.
        if s.bytes().any(|b| b.is_ascii_control()) {
            return Err("the API key holds a control character");
        }
        Ok(Self(s.to_owned()))
    }
}

/// An `http://` URL without a trailing slash, so paths can be appended to it.
fn parse_base_url(raw: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" => {}
        // No TLS stack is built in (it would add a C toolchain dependency); the API itself
        // serves plain HTTP, normally behind a TLS-terminating proxy on another host.
        "https" => return Err("https is not supported by this build; use http://".into()),
        other => return Err(format!("unsupported scheme '{other}' (use http://)")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the base URL cannot have a query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_and_https_is_refused() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            parse_base_url("http://h/prefix/").unwrap(),
            "http://h/prefix"
        );
        assert!(parse_base_url("https://h").is_err());
        assert!(parse_base_url("h:80").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn api_keys_never_show_in_debug() {
        let key: ApiKey = "s3cret".parse().unwrap();
        assert!(!format!("{key:?}").contains("s3cret"));
        assert!("a\nb".parse::<ApiKey>().is_err());
    }
}
