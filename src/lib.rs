//! job-launcher-mock: a stand-in for Lucidworks Fusion's job-launcher API, for tests.
//!
//! [`app`] is the whole service as an axum `Router`; [`serve`] runs it on a listener
//! until a shutdown future resolves.

pub mod api;
pub mod config;
pub mod error;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod telemetry;

use std::future::Future;

use tokio::net::TcpListener;

pub use api::{AppState, app};
pub use config::Config;

/// Serves the app on an already bound listener until `shutdown` resolves, then lets
/// in-flight requests finish.
///
/// Long-lived answers (waits, event streams) end when `shutdown` resolves, so they do
/// not hold the drain open.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = state.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.stop();
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A future that resolves at the first SIGTERM or Ctrl-C (SIGINT).
///
/// The handlers are installed by this call, not when the future is first polled, so a
/// signal that arrives right after the readiness line still drains and exits cleanly.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received; draining"),
                _ = interrupt.recv() => tracing::info!("Ctrl-C received; draining"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received; draining");
            }
        })
    }
}
