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
pub mod clock;
pub mod config;
pub mod duration;
pub mod error;
pub mod faults;
pub mod healthcheck;
pub mod jobs;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod server;
pub mod store;
pub mod telemetry;

use std::future::Future;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::api::DropConnection;

pub use api::{AppState, app, openapi};
pub use config::Config;
pub use model::JobState;
pub use registry::WaitTimedOut;
pub use server::{MockServer, MockServerBuilder};

/// Serves the app on an already bound listener until `shutdown` resolves, then lets
/// in-flight requests finish.
///
/// Long-lived answers (waits, event streams) end when `shutdown` resolves, so they do
/// not hold the drain open. The connections are served here rather than by
/// `axum::serve` so that a `drop` fault can close one without an answer.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.jobs.start_driver();
    let stopping = state.stopping.clone();
    let stack = api::service(state);
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small answers go out at once rather than waiting to fill a segment.
        let _ = stream.set_nodelay(true);
        let stack = stack.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let answer = stack.clone().oneshot(request.map(axum::body::Body::new));
            answer.map(|answer| {
                let response = answer.unwrap_or_else(|never| match never {});
                if response.extensions().get::<DropConnection>().is_some() {
                    // An error from the service makes hyper close the connection unanswered.
                    return Err(DroppedByFault);
                }
                Ok(response)
            })
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.stop();
    graceful.shutdown().await;
    Ok(())
}

/// The error a `drop` fault gives hyper, so that it closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct DroppedByFault;

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
