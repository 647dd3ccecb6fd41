//! One connection: hyper serving it over HTTP/1 or HTTP/2 (a wait over HTTP/1 is
//! served by [`super::lean`]), watched for its timeouts and for the drain.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use futures_util::FutureExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt;

use super::activity::{Activity, InFlight, Tracked};
use super::lean;
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
    let service = answers(stack.clone(), Arc::clone(&activity));
    Guarded::new(
        Conn::Sniffing {
            http1: false,
            stream: Some(stream),
            with: Some(With {
                service,
                stack,
                protocols: Arc::clone(protocols),
                activity: Arc::clone(&activity),
                drain: drain.clone(),
            }),
        },
        activity,
        peers,
        drain,
    )
}

/// What a connection is served with, whichever protocol it turns out to speak.
struct With<S, A> {
    /// The service hyper calls.
    service: S,
    /// The app, for the requests [`lean`] answers.
    stack: A,
    protocols: Arc<Protocols>,
    activity: Arc<Activity>,
    drain: CancellationToken,
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

/// A boxed [`lean::serve`]: boxed, so that a connection that never has a wait served
/// that way does not carry room for one.
type LeanFuture = Pin<Box<dyn Future<Output = io::Result<lean::Next>> + Send>>;

pin_project_lite::pin_project! {
    /// One connection, served by hyper once its first bytes tell which protocol it
    /// speaks, or by [`lean`] while its requests over HTTP/1 are waits.
    ///
    /// The protocol is told from bytes peeked at, not read, so that hyper's HTTP/1
    /// connection reads the whole first head at once into a buffer of its usual size.
    /// (`auto::Builder` reads a few bytes first; hyper then reads the rest into a buffer
    /// it has to grow, which doubled the memory a waiting connection holds.)
    #[project = ConnProj]
    enum Conn<S, A>
    where
        S: HttpService<Incoming>,
    {
        // Waiting for a request's first bytes: a new connection's, or the next after an
        // answer from `lean`.
        Sniffing {
            stream: Option<TcpStream>,
            with: Option<With<S, A>>,
            // Whether the connection has spoken HTTP/1 already: it cannot turn to
            // HTTP/2 now, whatever its bytes look like.
            http1: bool,
        },
        Lean {
            serving: LeanFuture,
            with: Option<With<S, A>>,
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

impl<S, A> Conn<S, A>
where
    S: Handles,
    A: api::Answers,
{
    /// Whether its answers are sent by tasks other than the connection's: HTTP/2 runs
    /// each stream on a task of its own.
    fn answers_elsewhere(&self) -> bool {
        matches!(self, Conn::Http2 { .. } | Conn::Either { .. })
    }

    /// Asks hyper to close the connection once its in-flight requests are answered.
    /// Waiting for a request's first bytes, it closes at once. `lean` needs nothing: a
    /// head it is reading has set `head_since` with its first read, so [`Guarded`] closes
    /// the connection as one with nothing to answer, and a wait it serves closes the
    /// connection after its answer by itself.
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        match self.as_mut().project() {
            ConnProj::Sniffing { .. } => self.set(Conn::Closed),
            ConnProj::Lean { .. } | ConnProj::Closed => {}
            ConnProj::Http1 { conn } => conn.graceful_shutdown(),
            ConnProj::Http2 { conn } => conn.as_mut().graceful_shutdown(),
            ConnProj::Either { conn } => conn.as_mut().graceful_shutdown(),
        }
    }

    /// hyper's connection of the protocol `io`'s first bytes tell.
    fn served_by_hyper(io: Io, with: With<S, A>, first: &[u8]) -> Self {
        let http2 = !first.is_empty() && first == &HTTP2_PREFACE[..first.len()];
        let protocols = &with.protocols;
        if !http2 {
            Self::http1(io, with)
        } else if first.len() == HTTP2_PREFACE.len() {
            Conn::Http2 {
                conn: Box::pin(protocols.http2.serve_connection(io, with.service)),
            }
        } else {
            Conn::Either {
                conn: Box::pin(
                    protocols
                        .either
                        .serve_connection(io, with.service)
                        .into_owned(),
                ),
            }
        }
    }
}

impl<S, A> Conn<S, A>
where
    S: Handles,
{
    fn http1(io: Io, with: With<S, A>) -> Self {
        Conn::Http1 {
            conn: with.protocols.http1.serve_connection(io, with.service),
        }
    }
}

impl<S, A> Future for Conn<S, A>
where
    S: Handles,
    A: api::Answers,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                ConnProj::Sniffing {
                    stream,
                    with,
                    http1,
                } => {
                    let Some(socket) = stream.as_ref() else {
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
                    let (Some(stream), Some(with)) = (stream.take(), with.take()) else {
                        return Poll::Ready(Ok(()));
                    };
                    let http2 = !*http1 && peeked == &HTTP2_PREFACE[..peeked.len()];
                    let heads = !http2 || peeked.len() < HTTP2_PREFACE.len();
                    let io = Tracked::new(stream, &with.activity, heads);
                    if lean::may_be_a_wait(peeked) {
                        Conn::Lean {
                            serving: Box::pin(lean::serve(
                                io,
                                with.stack.clone(),
                                Arc::clone(&with.activity),
                                with.drain.clone(),
                            )),
                            with: Some(with),
                        }
                    } else if *http1 {
                        Self::http1(TokioIo::new(io), with)
                    } else {
                        Self::served_by_hyper(TokioIo::new(io), with, peeked)
                    }
                }
                ConnProj::Lean { serving, with } => {
                    let next = ready!(serving.as_mut().poll(cx))?;
                    let Some(with) = with.take() else {
                        return Poll::Ready(Ok(()));
                    };
                    match next {
                        lean::Next::Close => Conn::Closed,
                        lean::Next::Again(stream) => Conn::Sniffing {
                            stream: Some(stream),
                            with: Some(with),
                            http1: true,
                        },
                        lean::Next::Hyper(io) => Self::http1(TokioIo::new(io), with),
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
    struct Guarded<S, A>
    where
        S: HttpService<Incoming>,
    {
        #[pin]
        conn: Conn<S, A>,
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

impl<S, A> Guarded<S, A>
where
    S: HttpService<Incoming>,
{
    fn new(
        conn: Conn<S, A>,
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

impl<S, A> Future for Guarded<S, A>
where
    S: Handles,
    A: api::Answers,
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
