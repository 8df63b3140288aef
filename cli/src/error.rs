//! How a command ends, and the exit status each ending maps to (the table in README.md).

/// A command that ran to the end. A job that ended failed or cancelled is not an error of the
/// client, but scripts must be able to tell it from success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// The job ended `failed` or `cancelled`: exit 1, its record already printed.
    JobUnsuccessful,
}

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad arguments or an unreadable `--input`, found before anything was sent.
    #[error("{0}")]
    Usage(String),
    /// No HTTP answer at all: refused, timed out, name not resolved.
    #[error("cannot reach the inferq API at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// 401 or 403: the API key is missing, wrong, or lacks the right.
    #[error("the server refused the request (HTTP {status}): {message}{hint}")]
    Unauthorized {
        status: u16,
        message: String,
        /// A hint to set `INFERQ_API_KEY` when none was sent.
        hint: &'static str,
    },
    /// The server's `{"error": {"code", "message"}}` for any other non-2xx answer.
    #[error("{message} ({code})")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// A 2xx answer that is not what the API documents (a proxy in the way, a different server).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            // clap's own code for usage errors, so both kinds of bad invocation look alike.
            Self::Usage(_) => 2,
            Self::Unreachable { .. } | Self::Unauthorized { .. } => 3,
            Self::Server { .. } | Self::Protocol(_) | Self::Output(_) => 1,
        }
    }
}
