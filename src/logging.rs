//! Structured logs through tracing: pretty for a terminal, JSON for collectors.

use crate::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `RUST_LOG`, when set, overrides `--log`.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}
