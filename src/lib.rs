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
//! [`MockServer::builder`] sets what the binary's flags set (validation, bounds, the
//! clock, scenarios, credentials, timeouts), and
//! [`into_router`](MockServerBuilder::into_router) gives the whole service as an axum
//! `Router`, to call in-process or to nest into an app of one's own. The views it gives
//! ([`Run`], [`History`], [`Journal`]) are `Deserialize`, so a test that talks to a
//! shared mock over HTTP can read the routes' answers into them too.
//!
//! [`MockServer::session`] gives a [`MockSession`]: a world of its own on the same
//! server (runs, journal, faults, clock), under its own [`uri`](MockSession::uri), with
//! the same methods, for tests that share one server; and `verify` on both checks what
//! clients did (each run's states and update count, refused requests) in one call.
//!
//! The crate's `cli` feature (on by default) is the binary's: flags, logs, the
//! allocator and `--data-dir`. A test crate needs none of it:
//! `job-launcher-mock = { ..., default-features = false }`.

// The modules are the crate's own; what a user needs is re-exported below. Where the
// code for a change lives: ARCHITECTURE.md.
mod access;
mod api;
mod app;
// Not API: the update path's pieces, for benches/update_path.rs alone.
#[doc(hidden)]
pub mod bench;
// Not API: the binary's body, which src/main.rs calls.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
mod clock;
mod config;
mod configs;
mod duration;
mod error;
mod faults;
#[cfg(feature = "cli")]
mod healthcheck;
mod journal;
mod metrics;
mod model;
mod registry;
mod routes;
mod serve;
mod server;
mod sessions;
mod sim;
mod store;
mod sync;
#[cfg(feature = "cli")]
mod telemetry;
mod updates;
mod verify;
mod world;

pub use model::JobState;
pub use server::{
    Error, History, HistoryEntry, Journal, JournalEntry, MockServer, MockServerBuilder,
    MockSession, Run, Warning,
};
