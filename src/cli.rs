//! The binary's body, behind the `cli` feature: read the flags, start logging, bind,
//! serve until SIGTERM or Ctrl-C. `src/main.rs` calls [`main`] and chooses the
//! allocator, which is the binary's choice, never the library's.

use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::{Command, Config};
use crate::serve::{serve, shutdown_signal};
use crate::{healthcheck, telemetry};

/// Runs `job-launcher-mock` with this process's arguments and environment: exit 0 after
/// a clean shutdown, 1 when it cannot start (the reason on stderr), 2 for a bad flag.
pub fn main() -> ExitCode {
    let config = Config::parse_hiding_secrets();
    if let Some(Command::Healthcheck) = config.command {
        return match healthcheck::check(config.bind, config.port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("unhealthy: {reason}");
                ExitCode::FAILURE
            }
        };
    }
    let outcome = tokio::runtime::Runtime::new()
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(config)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The reason and its causes, one line; not anyhow's `Debug`, which adds a
            // stack trace whenever RUST_BACKTRACE is set.
            eprintln!("job-launcher-mock: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    // Before binding: a scenarios file that cannot run stops the start with its reason.
    let state = AppState::new(&config)?;
    let listener = TcpListener::bind(config.addr())
        .await
        .with_context(|| format!("cannot listen on {}", config.addr()))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal().context("cannot install the signal handlers")?;
    // The readiness line tests and scripts wait for; stdout, so logs cannot bury it.
    println!("job-launcher-mock listening on http://{addr}");
    tracing::info!(%addr, validation = ?config.validation, clock = ?config.clock, "ready");
    serve(listener, state, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
