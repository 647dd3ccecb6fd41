use anyhow::Context;
use job_launcher_mock::config::Command;
use job_launcher_mock::{AppState, Config, healthcheck, serve, shutdown_signal, telemetry};
use tokio::net::TcpListener;

// The registry keeps and drops many body-sized buffers; glibc's allocator spends much of
// a busy run growing and trimming its heaps, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = Config::parse_hiding_secrets();
    if let Some(Command::Healthcheck) = config.command {
        match healthcheck::check(config.bind, config.port) {
            Ok(()) => std::process::exit(0),
            Err(reason) => {
                eprintln!("unhealthy: {reason}");
                std::process::exit(1);
            }
        }
    }
    let outcome = tokio::runtime::Runtime::new()
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(config)));
    if let Err(error) = outcome {
        // The reason and its causes, one line; not anyhow's `Debug`, which adds a stack
        // trace whenever RUST_BACKTRACE is set.
        eprintln!("job-launcher-mock: {error:#}");
        std::process::exit(1);
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
