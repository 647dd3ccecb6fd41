//! What a connection is doing, as its timeouts and the drain need to know: its requests
//! in flight ([`InFlight`]), and the bytes that arrive on its socket ([`Tracked`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection is doing, as its timeouts need to know. Its reads, its requests
/// and their answers write it; its `Guarded` future (`connection.rs`) reads it after each poll, so
/// nothing on a request's way arms or resets a timer.
///
/// Times are nanoseconds since the server started, plus one; 0 is "never".
pub(super) struct Activity {
    epoch: Instant,
    /// Requests whose answer has not been sent (or dropped) yet.
    pub(super) in_flight: AtomicU32,
    /// When the last answer was sent.
    pub(super) idle_since: AtomicU64,
    /// When the first byte after the last answer arrived (HTTP/1 only).
    pub(super) head_since: AtomicU64,
    /// The connection's task, when its answers are sent by tasks of their own (HTTP/2):
    /// woken when the last one is sent, to start the idle timeout.
    pub(super) idle: AtomicWaker,
}

impl Activity {
    pub(super) fn new(epoch: Instant) -> Activity {
        Activity {
            epoch,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            idle: AtomicWaker::new(),
        }
    }

    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    pub(super) fn at(&self, time: &AtomicU64) -> Option<Instant> {
        match time.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos - 1)),
        }
    }

    pub(super) fn bytes_arrived(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now(), Ordering::Release);
        }
    }

    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether closing the connection now loses nothing: no request in flight, and no
    /// answer sent that could still be on its way out (none sent yet, or a later request
    /// has begun since).
    pub(super) fn has_nothing_to_answer(&self) -> bool {
        !self.busy()
            && (self.idle_since.load(Ordering::Acquire) == 0
                || self.head_since.load(Ordering::Acquire) != 0)
    }
}

/// A request in flight, from the call of the service until its answer's body is sent or
/// dropped.
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn start(activity: &Arc<Activity>) -> InFlight {
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

/// A connection's socket, telling its [`Activity`] when bytes arrive.
pub(super) struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// Whether bytes arriving mean a request head has begun: HTTP/1. (HTTP/2 sends
    /// frames of its own, pings and window updates, between requests.)
    heads: bool,
    /// Bytes already read from the socket, to be read again before it.
    rewound: Option<Bytes>,
}

impl Tracked {
    pub(super) fn new(stream: TcpStream, activity: &Arc<Activity>, heads: bool) -> Tracked {
        Tracked {
            stream,
            activity: Arc::clone(activity),
            heads,
            rewound: None,
        }
    }

    /// Puts `read` back, to be read before anything more from the socket: for hyper,
    /// when [`super::lean`] has read the beginning of a request it leaves to hyper, or a
    /// request pipelined behind a wait it answered. Over HTTP/1 that is a head begun, for
    /// the header timeout.
    pub(super) fn rewind(&mut self, read: Bytes) {
        debug_assert!(self.rewound.is_none(), "rewound twice");
        if !read.is_empty() {
            if self.heads {
                self.activity.bytes_arrived();
            }
            self.rewound = Some(read);
        }
    }

    pub(super) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub(super) fn into_stream(self) -> TcpStream {
        self.stream
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(rewound) = &mut self.rewound {
            let now = rewound.split_to(rewound.len().min(buf.remaining()));
            buf.put_slice(&now);
            if rewound.is_empty() {
                self.rewound = None;
            }
            return Poll::Ready(Ok(()));
        }
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
