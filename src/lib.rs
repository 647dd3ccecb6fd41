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
//! assert_eq!(run.status["state"], "finished");
//! # Ok(())
//! # }
//! ```
//!
//! For everything else, [`app()`] is the whole service as an axum `Router`, and [`serve()`]
//! runs it on a listener until a shutdown future resolves.

pub mod access;
pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod configs;
pub mod duration;
pub mod error;
pub mod faults;
pub mod healthcheck;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod routes;
pub mod serve;
pub mod server;
pub mod sessions;
pub mod sim;
pub mod store;
mod sync;
#[cfg(feature = "cli")]
pub mod telemetry;
pub mod updates;
pub mod verify;
pub mod world;

pub use api::{app, openapi};
pub use app::AppState;
pub use config::Config;
pub use model::JobState;
pub use serve::{serve, shutdown_signal};
pub use server::{
    Error, History, HistoryEntry, Journal, JournalEntry, MockServer, MockServerBuilder, Run,
    Warning,
};
