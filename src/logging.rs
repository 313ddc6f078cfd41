//! Structured logs through tracing: pretty for a terminal, JSON for collectors. The
//! filter (`--log`) can change while herald runs: a reload (SIGHUP) that changes it puts
//! it in force at once, so an operator can turn on debug logs of one module and off again
//! without a restart.
//!
//! HTTP connections that end before a whole request (a closed tab, a TCP probe, a port
//! scanner) are the client's doing: `http_server` counts them on /metrics
//! (`herald_http_connection_errors_total`) rather than logging them as errors.

use crate::config::{Config, LogFormat};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// The installed subscriber's filter, to change on a reload.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Install the global subscriber. `RUST_LOG`, when set, overrides `--log`.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let layer = tracing_subscriber::fmt::layer();
    let registry = tracing_subscriber::registry();
    match config.log_format {
        LogFormat::Json => registry.with(layer.json().with_filter(filter)).init(),
        LogFormat::Pretty => registry.with(layer.with_filter(filter)).init(),
    }
}

/// Put `log` (checked by the configuration) in force from the next event on.
pub fn set_filter(log: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(log).map_err(|e| e.to_string())?;
    let handle = FILTER.get().ok_or("logging is not set up")?;
    handle.reload(filter).map_err(|e| e.to_string())
}
