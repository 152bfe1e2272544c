//! Log lines go to stderr through `tracing`. `RUST_LOG` overrides the
//! configured filter. No request body, PIN or key is ever logged: requests
//! appear by function name and `CKR_*` code only (at debug level).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogLevel;

/// Installs the global subscriber. Fails on a bad `RUST_LOG`, or if a
/// subscriber is installed already.
pub fn init(level: &LogLevel) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.trim().is_empty() => EnvFilter::builder()
            .parse(&directive)
            .map_err(|e| format!("RUST_LOG: invalid log filter {directive:?}: {e}"))?,
        _ => EnvFilter::builder()
            .parse(level.as_str())
            .map_err(|e| format!("server.log_level: {e}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}
