//! `stack-app` binary: config from the environment, then [`stack_app::serve`]
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use stack_app::{AppState, Config, load_sdk_config, logging, serve};

#[tokio::main]
async fn main() -> ExitCode {
    logging::init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stack-app: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stack-app: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let sdk = load_sdk_config(&config).await;
    let state = AppState::new(config, &sdk);
    match serve(listener, state, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::from(1)
        }
    }
}

/// Resolves on the first SIGTERM (what systemd and Auto Scaling send) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            // Still honour Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down; finishing in-flight requests");
}
