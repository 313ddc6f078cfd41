//! Structured logs through tracing: pretty for a terminal, JSON for collectors.
//!
//! HTTP connections that end before a whole request (a closed tab, a TCP probe, a port
//! scanner) are the client's doing: `http_server` counts them on /metrics
//! (`herald_http_connection_errors_total`) rather than logging them as errors.

use crate::config::{Config, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Install the global subscriber. `RUST_LOG`, when set, overrides `--log`.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer();
    let registry = tracing_subscriber::registry();
    match config.log_format {
        LogFormat::Json => registry.with(layer.json().with_filter(filter)).init(),
        LogFormat::Pretty => registry.with(layer.with_filter(filter)).init(),
    }
}
