//! Structured logs through tracing: pretty for a terminal, JSON for collectors.
//!
//! warp logs every HTTP connection that ends before a whole request as an ERROR
//! ("server connection error": a browser tab closed mid-request, a TCP health probe, a
//! port scanner). Those are the client's doing and would bury real errors, so they are
//! counted on /metrics (`herald_http_connection_errors_total`) instead of logged.

use crate::config::{Config, LogFormat};
use crate::metrics;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
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
        LogFormat::Json => registry
            .with(layer.json().with_filter(filter).with_filter(ClientHangups))
            .init(),
        LogFormat::Pretty => registry
            .with(layer.with_filter(filter).with_filter(ClientHangups))
            .init(),
    }
}

/// Passes every event but warp's per-connection errors, which it counts.
struct ClientHangups;

impl<S> Filter<S> for ClientHangups {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        if !event.metadata().target().starts_with("warp::server") {
            return true;
        }
        let mut message = ConnectionError(false);
        event.record(&mut message);
        if message.0 {
            metrics::HTTP_CONNECTION_ERRORS.inc();
        }
        !message.0
    }
}

/// Whether an event's message is warp's "server connection error".
struct ConnectionError(bool);

impl Visit for ConnectionError {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}").starts_with("server connection error");
        }
    }
}
