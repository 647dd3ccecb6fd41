//! One connection: hyper serving it over HTTP/1 or HTTP/2, watched for its timeouts
//! and for the drain.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt;

use crate::api::{self, DropConnection};
use crate::app::Peers;

/// HTTP/2 connections are pinged this often, and closed when a ping is not answered
/// within as long: a peer that vanished does not hold an event stream open.
const HTTP2_PING: Duration = Duration::from_secs(20);

/// Serves one accepted connection until it closes, times out, or the drain ends it.
pub(super) fn serve(
    stream: TcpStream,
    stack: impl api::Answers,
    protocols: &Arc<Protocols>,
    epoch: Instant,
    peers: &Peers,
    drain: &CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let activity = Arc::new(Activity::new(epoch));
    let service = answers(stack, Arc::clone(&activity));
    Guarded::new(
        Conn::Sniffing {
            stream: Some(stream),
            service: Some(service),
            protocols: Arc::clone(protocols),
            activity: Arc::clone(&activity),
        },
        activity,
        peers,
        drain,
    )
}

/// The service hyper calls for each request of one connection: the app, with the
/// request counted in flight until its answer's body has been sent.
fn answers(stack: impl api::Answers, activity: Arc<Activity>) -> impl Handles {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&activity);
        let answer = stack.clone().oneshot(request.map(Body::new));
        answer.map(move |answer| {
            let response = answer.unwrap_or_else(|never| match never {});
            if response.extensions().get::<DropConnection>().is_some() {
                // An error from the service makes hyper close the connection unanswered.
                return Err(DroppedByFault);
            }
            Ok(response.map(|body| Answer {
                body,
                _in_flight: in_flight,
            }))
        })
    })
}

/// The service of a connection, as hyper serves it over either protocol.
trait Handles:
    hyper::service::Service<
        hyper::Request<Incoming>,
        Response = hyper::Response<Answer>,
        Error = DroppedByFault,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Handles for S where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<Answer>,
            Error = DroppedByFault,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The error a `drop` fault gives hyper, so that it closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct DroppedByFault;

/// What a connection is doing, as its timeouts need to know. Its reads, its requests
/// and their answers write it; its [`Guarded`] future reads it after each poll, so
/// nothing on a request's way arms or resets a timer.
///
/// Times are nanoseconds since the server started, plus one; 0 is "never".
struct Activity {
    epoch: Instant,
    /// Requests whose answer has not been sent (or dropped) yet.
    in_flight: AtomicU32,
    /// When the last answer was sent.
    idle_since: AtomicU64,
    /// When the first byte after the last answer arrived (HTTP/1 only).
    head_since: AtomicU64,
    /// The connection's task, when its answers are sent by tasks of their own (HTTP/2):
    /// woken when the last one is sent, to start the idle timeout.
    idle: AtomicWaker,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        Activity {
            epoch,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            idle: AtomicWaker::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, time: &AtomicU64) -> Option<Instant> {
        match time.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos - 1)),
        }
    }

    fn bytes_arrived(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now(), Ordering::Release);
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether closing the connection now loses nothing: no request in flight, and no
    /// answer sent that could still be on its way out (none sent yet, or a later request
    /// has begun since).
    fn has_nothing_to_answer(&self) -> bool {
        !self.busy()
            && (self.idle_since.load(Ordering::Acquire) == 0
                || self.head_since.load(Ordering::Acquire) != 0)
    }
}

/// A request in flight, from the call of the service until its answer's body is sent or
/// dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.head_since.store(0, Ordering::Release);
        activity.idle_since.store(activity.now(), Ordering::Release);
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.idle.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, which counts its request in flight until it is dropped: hyper
    /// drops it once it has sent it, or given up on it.
    struct Answer {
        #[pin]
        body: Body,
        _in_flight: InFlight,
    }
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, telling its [`Activity`] when bytes arrive.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// Whether bytes arriving mean a request head has begun: HTTP/1. (HTTP/2 sends
    /// frames of its own, pings and window updates, between requests.)
    heads: bool,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.heads && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

type Io = TokioIo<Tracked>;

/// How each protocol is served. hyper's own header timeout is off: it would also cut
/// off a keep-alive connection idle between requests, which gets `--idle-timeout`.
pub(super) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// For a connection whose first bytes could still be either (a client that sent
    /// `P` and paused, say): reads until it can tell.
    either: auto::Builder<TokioExecutor>,
}

impl Protocols {
    pub(super) fn new() -> Protocols {
        let mut http1 = http1::Builder::new();
        http1.header_read_timeout(None);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_PING)
            .keep_alive_timeout(HTTP2_PING);
        let mut either = auto::Builder::new(TokioExecutor::new());
        either.http1().header_read_timeout(None);
        either
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_PING)
            .keep_alive_timeout(HTTP2_PING);
        Protocols {
            http1,
            http2,
            either,
        }
    }
}

/// The first bytes of every HTTP/2 connection without TLS ("prior knowledge").
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project_lite::pin_project! {
    /// One connection, served by hyper once its first bytes tell which protocol it
    /// speaks.
    ///
    /// The protocol is told from bytes peeked at, not read, so that hyper's HTTP/1
    /// connection reads the whole first head at once into a buffer of its usual size.
    /// (`auto::Builder` reads a few bytes first; hyper then reads the rest into a buffer
    /// it has to grow, which doubled the memory a waiting connection holds.)
    #[project = ConnProj]
    enum Conn<S>
    where
        S: HttpService<Incoming>,
    {
        Sniffing {
            stream: Option<TcpStream>,
            service: Option<S>,
            protocols: Arc<Protocols>,
            activity: Arc<Activity>,
        },
        Http1 {
            #[pin]
            conn: http1::Connection<Io, S>,
        },
        Http2 {
            conn: Pin<Box<http2::Connection<Io, S, TokioExecutor>>>,
        },
        Either {
            conn: Pin<Box<auto::Connection<'static, Io, S, TokioExecutor>>>,
        },
        Closed,
    }
}

impl<S> Conn<S>
where
    S: Handles,
{
    /// Whether its answers are sent by tasks other than the connection's: HTTP/2 runs
    /// each stream on a task of its own.
    fn answers_elsewhere(&self) -> bool {
        matches!(self, Conn::Http2 { .. } | Conn::Either { .. })
    }

    /// Asks hyper to close the connection once its in-flight requests are answered.
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ConnProj::Sniffing { .. } | ConnProj::Closed => {}
            ConnProj::Http1 { conn } => conn.graceful_shutdown(),
            ConnProj::Http2 { conn } => conn.as_mut().graceful_shutdown(),
            ConnProj::Either { conn } => conn.as_mut().graceful_shutdown(),
        }
    }
}

impl<S> Future for Conn<S>
where
    S: Handles,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                ConnProj::Sniffing {
                    stream,
                    service,
                    protocols,
                    activity,
                } => {
                    let (Some(socket), Some(_)) = (stream.as_ref(), service.as_ref()) else {
                        return Poll::Ready(Ok(()));
                    };
                    let mut first = [0; HTTP2_PREFACE.len()];
                    let mut peeked = ReadBuf::new(&mut first);
                    ready!(socket.poll_peek(cx, &mut peeked))?;
                    let peeked = peeked.filled();
                    if peeked.is_empty() {
                        // Closed before it sent anything.
                        return Poll::Ready(Ok(()));
                    }
                    let http2 = peeked == &HTTP2_PREFACE[..peeked.len()];
                    let (Some(stream), Some(service)) = (stream.take(), service.take()) else {
                        return Poll::Ready(Ok(()));
                    };
                    let io = TokioIo::new(Tracked {
                        stream,
                        activity: Arc::clone(activity),
                        heads: !http2 || peeked.len() < HTTP2_PREFACE.len(),
                    });
                    if !http2 {
                        Conn::Http1 {
                            conn: protocols.http1.serve_connection(io, service),
                        }
                    } else if peeked.len() == HTTP2_PREFACE.len() {
                        Conn::Http2 {
                            conn: Box::pin(protocols.http2.serve_connection(io, service)),
                        }
                    } else {
                        Conn::Either {
                            conn: Box::pin(
                                protocols.either.serve_connection(io, service).into_owned(),
                            ),
                        }
                    }
                }
                ConnProj::Http1 { conn } => return conn.poll(cx).map_err(Into::into),
                ConnProj::Http2 { conn } => return conn.as_mut().poll(cx).map_err(Into::into),
                ConnProj::Either { conn } => return conn.as_mut().poll(cx),
                ConnProj::Closed => return Poll::Ready(Ok(())),
            };
            self.set(next);
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection with its timeouts and its part in the shutdown: the future each
    /// connection's task runs.
    struct Guarded<S>
    where
        S: HttpService<Incoming>,
    {
        #[pin]
        conn: Conn<S>,
        activity: Arc<Activity>,
        // The timer is set for the earliest time the connection could be due to close,
        // and looks again when it fires; it is moved earlier only when a request head
        // begins on an idle connection, so a prompt request costs it nothing.
        #[pin]
        timer: Sleep,
        armed: Option<Instant>,
        accepted: Instant,
        header_timeout: Duration,
        idle_timeout: Duration,
        drain: CancellationToken,
        // Polled once, to be woken when the drain begins; after that `drain` is read.
        // (Polling it again takes a lock every connection shares.)
        #[pin]
        drain_woken: WaitForCancellationFutureOwned,
        listening: bool,
        draining: bool,
    }
}

impl<S> Guarded<S>
where
    S: HttpService<Incoming>,
{
    fn new(
        conn: Conn<S>,
        activity: Arc<Activity>,
        peers: &Peers,
        drain: &CancellationToken,
    ) -> Self {
        let accepted = Instant::now();
        let first = accepted + peers.header_timeout;
        Guarded {
            conn,
            activity,
            timer: tokio::time::sleep_until(first.into()),
            armed: Some(first),
            accepted,
            header_timeout: peers.header_timeout,
            idle_timeout: peers.idle_timeout,
            drain: drain.clone(),
            drain_woken: drain.clone().cancelled_owned(),
            listening: false,
            draining: false,
        }
    }
}

impl<S> Future for Guarded<S>
where
    S: Handles,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if !*this.listening {
            *this.listening = true;
            let _ = this.drain_woken.as_mut().poll(cx);
        }
        if !*this.draining && this.drain.is_cancelled() {
            *this.draining = true;
            if this.activity.has_nothing_to_answer() {
                tracing::debug!("closing a connection with nothing in flight: shutting down");
                return Poll::Ready(());
            }
            this.conn.as_mut().graceful_shutdown();
        }
        match this.conn.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "connection ended with an error");
                return Poll::Ready(());
            }
            Poll::Pending => {}
        }
        if *this.draining && this.activity.has_nothing_to_answer() {
            return Poll::Ready(());
        }
        if this.conn.answers_elsewhere() {
            this.activity.idle.register(cx.waker());
        }
        let due = |activity: &Activity| -> Option<Instant> {
            if activity.busy() {
                return None;
            }
            match (
                activity.at(&activity.idle_since),
                activity.at(&activity.head_since),
            ) {
                (None, _) => Some(*this.accepted + *this.header_timeout),
                (Some(_), Some(head)) => Some(head + *this.header_timeout),
                (Some(idle), None) => Some(idle + *this.idle_timeout),
            }
        };
        loop {
            let due_at = due(this.activity);
            if let Some(due_at) = due_at
                && this.armed.is_none_or(|armed| due_at < armed)
            {
                this.timer.as_mut().reset(due_at.into());
                *this.armed = Some(due_at);
            }
            if this.armed.is_none() {
                return Poll::Pending;
            }
            ready!(this.timer.as_mut().poll(cx));
            *this.armed = None;
            if let Some(due_at) = due(this.activity)
                && due_at <= Instant::now()
            {
                let phase = if this.activity.idle_since.load(Ordering::Acquire) != 0
                    && this.activity.head_since.load(Ordering::Acquire) == 0
                {
                    "idle"
                } else {
                    "a request head not sent in time"
                };
                tracing::debug!(phase, "closing a connection");
                return Poll::Ready(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_has_nothing_to_answer_before_a_request_and_once_the_next_head_begins() {
        let activity = Arc::new(Activity::new(Instant::now()));
        assert!(activity.has_nothing_to_answer(), "nothing sent yet");
        activity.bytes_arrived();
        assert!(activity.has_nothing_to_answer(), "half a first head");
        let in_flight = InFlight::start(&activity);
        assert!(!activity.has_nothing_to_answer(), "a request in flight");
        drop(in_flight);
        assert!(
            !activity.has_nothing_to_answer(),
            "answered: the answer may still be on its way out"
        );
        assert!(activity.at(&activity.idle_since).is_some());
        activity.bytes_arrived();
        assert!(activity.has_nothing_to_answer(), "the next head has begun");
        assert!(activity.at(&activity.head_since).is_some());
    }
}
