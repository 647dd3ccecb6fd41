//! The bare baseline for `bench/load.sh`: an axum server whose one handler reads the
//! whole request body and answers 200 with an empty body, on the same runtime (tokio's
//! multi-thread defaults), allocator (mimalloc) and TCP_NODELAY as the service, so that
//! the load test can say how much of the service's time is its own work.
//!
//! `cargo run --release --example bare -- --port 0` (or `PORT=0`); prints
//! `bare listening on http://ADDR` once ready; SIGTERM or Ctrl-C stops it.

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::routing::any;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads the whole body, answers 200 with nothing.
async fn sink(body: Bytes) {
    std::hint::black_box(body);
}

fn port() -> anyhow::Result<u16> {
    let mut args = std::env::args().skip(1);
    let mut port = std::env::var("PORT").ok();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = Some(args.next().context("--port needs a value")?),
            other => match other.strip_prefix("--port=") {
                Some(value) => port = Some(value.to_owned()),
                None => bail!("unknown argument {other:?}; usage: bare [--port N]"),
            },
        }
    }
    let port = port.unwrap_or_else(|| "0".to_owned());
    port.parse().with_context(|| format!("bad port {port:?}"))
}

/// Resolves at the first SIGTERM or Ctrl-C; the handlers are installed by this call.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

fn main() -> anyhow::Result<()> {
    let port = port()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let shutdown = shutdown_signal()?;
        println!("bare listening on http://{addr}");
        let app = Router::new().fallback(any(sink));
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    })
}
