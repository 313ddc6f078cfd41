//! The `herald` binary: load the configuration, start the server, reload on SIGHUP, stop
//! on SIGINT or SIGTERM.

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
    if config.check_only {
        return match herald::server::check(&config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::from(2)
            }
        };
    }
    herald::logging::init(&config);
    if let Err(e) = config.check_protected_mode() {
        tracing::error!("{e}");
        eprintln!("herald: {e}");
        return ExitCode::from(2);
    }
    // Before the listeners start: a signal that arrives while they bind must still
    // mean a clean shutdown, not the default of dying at once.
    let (mut int, mut term, mut hup) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(i), Ok(t), Ok(h)) => (i, t, h),
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
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => running.reload(Config::from_args(std::env::args_os())),
        }
    }
    tracing::info!("shutting down");
    running.shutdown();
    running.stopped().await;
    tracing::info!("bye");
    ExitCode::SUCCESS
}
