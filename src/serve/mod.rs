//! Serving connections: the accept loop, each connection's timeouts, the connection
//! limit, and shutdown with a deadline.
//!
//! What peers get (the contract's "failing closed"):
//! - a connection that has not sent a whole request head within `--header-timeout` of
//!   connecting, or of the first byte of a later request, is closed; so is one idle
//!   between requests for `--idle-timeout`;
//! - at most `--max-connections` are open at once; past it the service stops accepting
//!   and new connections wait in the listen queue, as Tomcat (Fusion's server) does;
//! - out of file descriptors, it goes on serving the open connections and retries
//!   accepting with a back-off, saying so at most once a second;
//! - on shutdown it stops accepting, closes at once every connection with nothing in
//!   flight (a half-sent head included), answers what is in flight (waits and event
//!   streams end at once), and cuts off whatever is left at `--shutdown-timeout`. A
//!   request cut off before its body arrived has changed nothing.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::app::AppState;

mod activity;
mod connection;
mod lean;

/// The first wait after a failed accept; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves the app on an already bound listener until `shutdown` resolves, then drains:
/// connections with nothing in flight close at once, in-flight requests are answered,
/// and what is left at `--shutdown-timeout` is closed.
///
/// Long-lived answers (waits, event streams) end when `shutdown` resolves, so they do
/// not hold the drain open. The connections are served here rather than by
/// `axum::serve` for their timeouts and limit, and so that a `drop` fault can close one
/// without an answer.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    state.world().sim.start_driver();
    state.sessions.start_sweeper();
    let stopping = state.stopping.clone();
    let peers = state.peers;
    let stack = api::service(state);
    let protocols = Arc::new(connection::Protocols::new());
    let drain = CancellationToken::new();
    let epoch = Instant::now();
    let mut connections = JoinSet::new();
    let mut full = Throttle::default();
    let mut refused = Throttle::default();
    let mut backoff = FIRST_BACKOFF;
    tokio::pin!(shutdown);
    loop {
        while let Some(ended) = connections.try_join_next() {
            report(ended);
        }
        if connections.len() >= peers.max_connections.get() {
            if let Some(missed) = full.ready() {
                tracing::warn!(
                    max_connections = peers.max_connections.get(),
                    times_since_last_line = missed,
                    "at --max-connections: new connections wait in the listen queue until one closes"
                );
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(ended) = connections.join_next() => report(ended),
            }
            continue;
        }
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(ended) = connections.join_next() => {
                report(ended);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = FIRST_BACKOFF;
                stream
            }
            // The peer gave up before it was accepted: nothing is wrong here.
            Err(e) if is_peer_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, say: the open connections go on being served,
                // and one of them closing frees a descriptor, so that ends the wait too.
                if let Some(missed) = refused.ready() {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        failed_since_last_line = missed,
                        "cannot accept connections; serving the open ones and retrying"
                    );
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    Some(ended) = connections.join_next() => report(ended),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Small answers go out at once rather than waiting to fill a segment.
        let _ = stream.set_nodelay(true);
        connections.spawn(connection::serve(
            stream,
            stack.clone(),
            &protocols,
            epoch,
            &peers,
            &drain,
        ));
    }
    drop(listener);
    // The drain first: a wait that `stopping` ends then answers with `connection: close`.
    drain.cancel();
    stopping.stop();
    let deadline = tokio::time::sleep(peers.shutdown_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ended = connections.join_next() => match ended {
                Some(ended) => report(ended),
                None => break,
            },
            () = &mut deadline => {
                tracing::warn!(
                    connections = connections.len(),
                    shutdown_timeout = ?peers.shutdown_timeout,
                    "closing the connections still open at the shutdown deadline"
                );
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                break;
            }
        }
    }
    Ok(())
}

/// The errors of an accept that say the peer went away, not that the service cannot
/// accept: the next accept may well succeed.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

fn report(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection's task panicked");
    }
}

/// Lets a repeated warning through at most once a second, counting the times it held
/// back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    missed: u64,
}

impl Throttle {
    /// `Some(times held back since the last line)` when a line may be written now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < Duration::from_secs(1) => {
                self.missed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.missed))
            }
        }
    }
}

/// A future that resolves at the first SIGTERM or Ctrl-C (SIGINT).
///
/// The handlers are installed by this call, not when the future is first polled, so a
/// signal that arrives right after the readiness line still drains and exits cleanly.
#[cfg(feature = "cli")]
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_is_let_through_once_a_second_with_the_count_held_back() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.ready(), Some(0));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
        throttle.last = Instant::now().checked_sub(Duration::from_secs(2));
        assert_eq!(throttle.ready(), Some(2));
        assert_eq!(throttle.ready(), None);
    }
}
