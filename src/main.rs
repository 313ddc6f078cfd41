//! The `herald` binary: load the configuration, start the server, stop on a signal.

use herald::config::Config;
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    herald::logging::init(&config);
    if let Err(e) = config.check_protected_mode() {
        tracing::error!("{e}");
        eprintln!("herald: {e}");
        return ExitCode::from(2);
    }
    // Before the listeners start: a signal that arrives while they bind must still
    // mean a clean shutdown, not the default of dying at once.
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        _ => return ExitCode::FAILURE,
    };
    let running = match herald::server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("herald: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
    running.shutdown();
    running.stopped().await;
    tracing::info!("bye");
    ExitCode::SUCCESS
}
