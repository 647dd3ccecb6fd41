//! job-launcher-mock: a stand-in for Lucidworks Fusion's job-launcher API, for tests.
//!
//! [`app`] is the whole service as an axum `Router`; [`serve`] runs it on a listener
//! until a shutdown future resolves.

pub mod api;
pub mod config;
pub mod error;
pub mod model;
pub mod registry;
pub mod telemetry;

use std::future::Future;

use tokio::net::TcpListener;

pub use api::{AppState, app};
pub use config::Config;

/// Serves the app on an already bound listener until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves at the first SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; draining"),
        () = terminate => tracing::info!("SIGTERM received; draining"),
    }
}
