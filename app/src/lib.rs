//! `stack-app`: the employee directory web app that `stack` deploys on EC2
//! behind an Application Load Balancer.
//!
//! # Layout
//!
//! - [`config`]: settings from environment variables only.
//! - [`state`]: [`AppState`] (AWS clients, cache, metrics) and the read/write
//!   operations the handlers share.
//! - [`store`]: DynamoDB (employees) and S3 (photo thumbnails) calls.
//! - [`auth`]: the write credential every write must present.
//! - [`cache`]: TTL read cache with hit/miss counters.
//! - [`model`], [`input`], [`photo`]: the record, request parsing and every
//!   validation rule, photo decoding and thumbnailing.
//! - [`routes`]: the router; public pages, `/admin` forms, `/api/employees`,
//!   and `/health`, `/info`, `/info/stress`, `/metrics`.
//! - [`views`]: HTML rendering.
//! - [`imds`]: hostname and EC2 instance metadata (IMDSv2).
//! - [`metrics`], [`logging`], [`stress`]: Prometheus text, JSON log lines, CPU burner.
//!
//! `main.rs` only reads the config, binds the port and calls [`serve`] with a
//! SIGTERM/SIGINT future; tests call [`serve`] on `127.0.0.1:0`.

pub mod auth;
pub mod cache;
pub mod config;
pub mod imds;
pub mod input;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod photo;
pub mod routes;
pub mod state;
pub mod store;
pub mod stress;
pub mod views;

pub use config::Config;
pub use state::{AppState, load_sdk_config};

use axum::serve::ListenerExt;

/// Serves the app on `listener` until `shutdown` resolves, then stops accepting
/// and waits for in-flight requests to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    // Instance metadata is looked up once, in the background: start-up never waits on it.
    let bg = state.clone();
    let lookup = tokio::spawn(async move {
        bg.host_info().await;
    });
    tracing::info!(
        addr = %addr,
        table = %state.config.table,
        bucket = %state.config.bucket,
        region = %state.config.region,
        write_credential = %state.auth.describe(),
        "listening"
    );
    // Small responses on keep-alive connections: do not let Nagle delay them.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = routes::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    // A lookup still retrying must not log after the last line: stop it, and wait
    // until it has.
    lookup.abort();
    let _ = lookup.await;
    tracing::info!("stopped");
    Ok(())
}
