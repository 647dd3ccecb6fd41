//! job-launcher-mock: a stand-in for Lucidworks Fusion's job-launcher API, for tests.
//!
//! A Rust test suite starts one in its own process with [`MockServer`], points the code
//! under test at [`MockServer::uri`], and waits for and reads what that code reported:
//!
//! ```
//! use std::time::Duration;
//! use job_launcher_mock::{JobState, MockServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = MockServer::start().await;
//! let url = format!("{}/job-launcher/launcher/status", server.uri());
//! let update = serde_json::json!({"jobId": "hhzitrwancwv", "state": "finished"});
//! reqwest::Client::new().post(&url).json(&update).send().await?;
//! let run = server
//!     .wait_for_state("hhzitrwancwv", JobState::Finished, Duration::from_secs(5))
//!     .await?;
//! assert_eq!(run["status"]["state"], "finished");
//! # Ok(())
//! # }
//! ```
//!
//! For everything else, [`app`] is the whole service as an axum `Router`, and [`serve`]
//! runs it on a listener until a shutdown future resolves.

pub mod api;
pub mod config;
pub mod error;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod server;
pub mod telemetry;

use std::future::Future;

use tokio::net::TcpListener;

pub use api::{AppState, app, openapi};
pub use config::Config;
pub use model::JobState;
pub use registry::WaitTimedOut;
pub use server::{MockServer, MockServerBuilder};

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
