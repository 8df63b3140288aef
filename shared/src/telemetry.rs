//! Logging setup shared by both binaries.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global `tracing` subscriber: `RUST_LOG` filters (default `info`), and `json`
/// switches to one JSON object per line for log shippers.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (several servers in one test process) keeps the first subscriber.
    let _ = if json {
        registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
}
