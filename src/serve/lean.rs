//! Waits served beside hyper, so that an open one holds only what it needs.
//!
//! hyper's HTTP/1 connection keeps two buffers of 8 KB, one it reads request heads into
//! and one it writes answers from, for as long as the connection lives: an open wait on
//! it held 14.3 KB of RSS, most of it those buffers. So a connection whose next request
//! is a `GET` of `/_mock/runs/{jobId}/wait` (at the root or under `/sessions/{id}`) has
//! that request read, answered and written here instead:
//! - its head is read into a buffer of its own size and parsed by `httparse`, the parser
//!   hyper uses;
//! - the same service stack as every other request's answers it, so its access checks,
//!   metrics, logs and errors are the same;
//! - the answer is written in one piece with `content-length` and `date`, as hyper writes
//!   a whole body;
//! - a peer that closes the connection, or half-closes it, while it waits ends the wait,
//!   as hyper does (unless it has sent its next request already: then both are answered).
//!
//! Then the connection waits for its next request as a new one does, holding no buffer.
//! A request pipelined behind the wait hands the connection to hyper for good.
//!
//! Anything else is hyper's: another route, a body, HTTP/1.0, `Expect`, an upgrade, or a
//! head that does not parse or is larger than [`MAX_HEAD`]. hyper reads the bytes read
//! here first (see [`Tracked::rewind`]) and answers it as if nothing had come between.
//! Which requests come here is decided on a few bytes peeked at ([`may_be_a_wait`]): only
//! a `GET` under `/_mock/runs/` or `/sessions/` has its head read here, and handed to
//! hyper once its path shows it is not a wait's. A status update never comes here.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::activity::{Activity, InFlight, Tracked};
use crate::api::{self, DropConnection};
use crate::routes;

/// The largest head read here; a larger one goes to hyper, whose limits answer it.
const MAX_HEAD: usize = 4096;
/// The most header fields a head read here may have; past it, hyper's.
const MAX_HEADERS: usize = 32;
/// What a wait's request line begins with, at the root and in a session
/// ([`routes::WAIT`], [`routes::SESSION_PREFIX`]).
const BEGINNINGS: [&[u8]; 2] = [b"GET /_mock/runs/", b"GET /sessions/"];

/// Whether the first bytes of a request, peeked at, could begin a wait's.
pub(super) fn may_be_a_wait(first: &[u8]) -> bool {
    !first.is_empty()
        && BEGINNINGS.iter().any(|beginning| {
            let n = first.len().min(beginning.len());
            first[..n] == beginning[..n]
        })
}

/// Where a connection goes once this module is done with a request.
pub(super) enum Next {
    /// Closed: by the peer (before its answer, or with half a head), at its asking, or
    /// because the service is shutting down.
    Close,
    /// Answered; the connection waits for its next request.
    Again(TcpStream),
    /// Not a wait, or a wait answered with the next request already begun (pipelined):
    /// hyper serves the connection from here, the bytes read so far first.
    Hyper(Tracked),
}

/// Reads one request head from `io` and, if it is a wait's, answers it.
pub(super) async fn serve(
    mut io: Tracked,
    stack: impl api::Answers,
    activity: Arc<Activity>,
    drain: CancellationToken,
) -> io::Result<Next> {
    let Wait {
        request,
        close,
        rest,
    } = match read_head(&mut io).await? {
        Some(Head::Wait(wait)) => *wait,
        Some(Head::Other(read)) => {
            io.rewind(read);
            return Ok(Next::Hyper(io));
        }
        None => return Ok(Next::Close),
    };
    let in_flight = InFlight::start(&activity);
    let answer = async {
        let response = stack
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await;
        (parts, body)
    };
    let (parts, body) = if rest.is_none() {
        tokio::select! {
            biased;
            answer = answer => answer,
            () = peer_gone(io.stream()) => return Ok(Next::Close),
        }
    } else {
        // The next request is already read: a peer that half-closes now still expects
        // both answers, as hyper gives them.
        answer.await
    };
    let Ok(body) = body else {
        return Ok(Next::Close);
    };
    // Waits are on the mock's own surface, which no fault touches; were one dropped, it
    // would close the connection unanswered here as on hyper's path.
    if parts.extensions.get::<DropConnection>().is_some() {
        return Ok(Next::Close);
    }
    let close = close || drain.is_cancelled() || asks_to_close(&parts.headers);
    let answer = encode(parts.status, &parts.headers, &body, close);
    // Answered, as hyper counts it once the answer is in its write buffer: from here the
    // idle timeout runs, so a peer that stops reading does not hold the connection.
    drop(in_flight);
    io.stream_mut().write_all(&answer).await?;
    if close || drain.is_cancelled() {
        let _ = io.stream_mut().shutdown().await;
        return Ok(Next::Close);
    }
    Ok(match rest {
        Some(rest) => {
            io.rewind(rest);
            Next::Hyper(io)
        }
        None => Next::Again(io.into_stream()),
    })
}

/// A wait's request, read.
struct Wait {
    request: Request<Body>,
    /// Whether the client asked for the connection to close after the answer.
    close: bool,
    /// Bytes read after the head: a pipelined request's.
    rest: Option<Bytes>,
}

/// What the bytes read so far of a request are.
enum Head {
    Wait(Box<Wait>),
    /// Not a wait's, or not one this module answers: the bytes, for hyper.
    Other(Bytes),
}

/// Reads a request head: `None` when the peer closes the connection before it is whole.
async fn read_head(io: &mut Tracked) -> io::Result<Option<Head>> {
    let mut read = Vec::with_capacity(256);
    loop {
        if read.len() == read.capacity() {
            if read.len() >= MAX_HEAD {
                return Ok(Some(Head::Other(read.into())));
            }
            read.reserve(read.len());
        }
        if io.read_buf(&mut read).await? == 0 {
            return Ok(None);
        }
        if let Some(head) = classify(&read) {
            return Ok(Some(match head {
                Classified::Wait(wait) => Head::Wait(wait),
                Classified::Other => Head::Other(read.into()),
            }));
        }
    }
}

enum Classified {
    Wait(Box<Wait>),
    Other,
}

/// What the beginning of a request is: `None` while it could still be a wait's head but
/// is not whole. Parsed as hyper parses, by `httparse` with its default settings (hyper's
/// `http1::Builder` here sets none of its parser's options); a head that does not parse
/// is hyper's to answer (400, 431).
fn classify(read: &[u8]) -> Option<Classified> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut fields);
    match head.parse(read) {
        Ok(httparse::Status::Complete(length)) => Some(match wait_request(&head) {
            Some((request, close)) => Classified::Wait(Box::new(Wait {
                request,
                close,
                // Bytes read after the head: a pipelined request's.
                rest: (length < read.len()).then(|| Bytes::copy_from_slice(&read[length..])),
            })),
            None => Classified::Other,
        }),
        Ok(httparse::Status::Partial) => {
            let other_method = head.method.is_some_and(|method| method != "GET");
            let other_path = head.path.is_some_and(|path| !is_wait_path(path));
            (other_method || other_path).then_some(Classified::Other)
        }
        Err(_) => Some(Classified::Other),
    }
}

/// Whether a `Connection` header asks to close the connection.
fn asks_to_close(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|tokens| {
            tokens
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
    })
}

/// The request a parsed head asks for, and whether it asks to close the connection after
/// the answer; `None` when it is not a wait this module answers.
fn wait_request(head: &httparse::Request<'_, '_>) -> Option<(Request<Body>, bool)> {
    let path = head.path?;
    if head.method != Some("GET") || head.version != Some(1) || !is_wait_path(path) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    let mut close = false;
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        if name == TRANSFER_ENCODING || name == EXPECT || name == UPGRADE {
            return None;
        }
        if name == CONTENT_LENGTH && value.as_bytes() != b"0" {
            return None;
        }
        if name == CONNECTION {
            let tokens = value.to_str().ok()?;
            for token in tokens.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("upgrade") {
                    return None;
                }
                close |= token.eq_ignore_ascii_case("close");
            }
        }
        headers.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = Uri::try_from(path).ok()?;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some((request, close))
}

/// Whether a request target is a wait's, with any query.
fn is_wait_path(target: &str) -> bool {
    routes::is_wait(target.split_once('?').map_or(target, |(path, _)| path))
}

/// Resolves when the peer closes or half-closes the connection, or it fails; never when
/// it sends more (a pipelined request, left for later).
async fn peer_gone(stream: &TcpStream) {
    let mut byte = [0; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// An answer as hyper writes one with a whole body: its headers in order (its
/// `content-length` where it is), `connection: close` when the connection closes after
/// it, then `content-length` if it had none, and `date`.
fn encode(status: StatusCode, headers: &HeaderMap, body: &[u8], close: bool) -> Vec<u8> {
    // An answer that may not have a body has no length either (RFC 9110, 8.6).
    let bodiless = status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let mut length = itoa::Buffer::new();
    let length = length.format(body.len()).as_bytes();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut field = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in headers {
        if name == CONTENT_LENGTH {
            if !bodiless {
                field(b"content-length", length);
            }
        } else if name != CONNECTION && name != TRANSFER_ENCODING {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if close {
        field(b"connection", b"close");
    }
    if !bodiless && !headers.contains_key(CONTENT_LENGTH) {
        field(b"content-length", length);
    }
    if !headers.contains_key(DATE) {
        field(
            b"date",
            httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_wait_path_at_the_root_or_in_a_session_is_one() {
        for wait in [
            "/_mock/runs/a/wait",
            "/_mock/runs/a%2Fb/wait?state=finished&timeout=2s",
            "/sessions/s1/_mock/runs/a/wait",
            "/sessions/s1/_mock/runs/a/wait?timeout=1m",
        ] {
            assert!(is_wait_path(wait), "{wait}");
        }
        for other in [
            "/_mock/runs/a",
            "/_mock/runs//wait",
            "/_mock/runs/a/b/wait",
            "/_mock/runs/a/wait/",
            "/sessions//_mock/runs/a/wait",
            "/sessions/s1",
            "/sessions/s1/_mock/runs/a",
            "/job-launcher/launcher/status",
        ] {
            assert!(!is_wait_path(other), "{other}");
        }
    }

    #[test]
    fn a_wait_begins_as_the_routes_say() {
        let (root, _) = routes::WAIT.split_once("{jobId}").expect("a jobId");
        assert_eq!(BEGINNINGS[0], format!("GET {root}").as_bytes());
        assert_eq!(
            BEGINNINGS[1],
            format!("GET {}", routes::SESSION_PREFIX).as_bytes()
        );
    }

    #[test]
    fn the_first_bytes_of_a_wait_or_of_what_could_still_become_one_may_be_a_wait() {
        for first in [
            &b"G"[..],
            b"GET /_mo",
            b"GET /_mock/runs/x",
            b"GET /sessions/",
        ] {
            assert!(may_be_a_wait(first), "{first:?}");
        }
        for first in [
            &b""[..],
            b"POST /",
            b"GET /_mock/events",
            b"GET /metrics",
            b"PRI *",
        ] {
            assert!(!may_be_a_wait(first), "{first:?}");
        }
    }

    #[test]
    fn a_head_with_a_body_an_upgrade_or_an_expectation_is_left_to_hyper() {
        let parse = |text: &str| {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut head = httparse::Request::new(&mut fields);
            assert!(head.parse(text.as_bytes()).expect("parses").is_complete());
            wait_request(&head).map(|(_, close)| close)
        };
        let wait = "GET /_mock/runs/a/wait HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(parse(&format!("{wait}\r\n")), Some(false));
        assert_eq!(
            parse(&format!("{wait}Content-Length: 0\r\n\r\n")),
            Some(false)
        );
        assert_eq!(
            parse(&format!("{wait}Connection: keep-alive, Close\r\n\r\n")),
            Some(true)
        );
        for refused in [
            "Content-Length: 2\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Expect: 100-continue\r\n",
            "Connection: Upgrade\r\n",
            "Upgrade: h2c\r\n",
        ] {
            assert_eq!(parse(&format!("{wait}{refused}\r\n")), None, "{refused}");
        }
        assert_eq!(parse("GET /_mock/runs/a/wait HTTP/1.0\r\n\r\n"), None);
        assert_eq!(parse("POST /_mock/runs/a/wait HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn an_answer_is_written_as_hyper_writes_a_whole_body() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-request-id", HeaderValue::from_static("7"));
        let answer = encode(StatusCode::OK, &headers, b"{}", true);
        let text = String::from_utf8(answer).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "HTTP/1.1 200 OK",
                "content-type: application/json",
                "x-request-id: 7",
                "connection: close",
                "content-length: 2",
            ]
        );
        assert!(
            lines[5].starts_with("date: ") && lines[5].ends_with(" GMT"),
            "{head}"
        );
        assert_eq!(lines.len(), 6);
        assert_eq!(body, "{}");

        headers.insert("content-length", HeaderValue::from_static("2"));
        headers.insert("x-other", HeaderValue::from_static("o"));
        let answer = encode(StatusCode::OK, &headers, b"{}", false);
        let text = String::from_utf8(answer).expect("text");
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .take_while(|line| !line.is_empty())
            .filter_map(|line| Some(line.split_once(": ")?.0))
            .collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-request-id",
                "content-length",
                "x-other",
                "date"
            ]
        );

        let answer = encode(StatusCode::NO_CONTENT, &HeaderMap::new(), b"", false);
        let text = String::from_utf8(answer).expect("text");
        assert!(
            text.starts_with("HTTP/1.1 204 No Content\r\ndate: "),
            "{text}"
        );
        assert!(!text.contains("content-length"), "{text}");
    }

    #[test]
    fn a_head_is_told_from_its_first_bytes_once_they_tell() {
        let wait = "GET /_mock/runs/a/wait HTTP/1.1\r\nHost: x\r\n\r\n";
        let told = |read: &str| match classify(read.as_bytes()) {
            None => "more",
            Some(Classified::Other) => "hyper",
            Some(Classified::Wait(_)) => "wait",
        };
        // Every beginning of a wait's head needs more; the whole of it is a wait.
        for end in 1..wait.len() {
            assert_eq!(told(&wait[..end]), "more", "{:?}", &wait[..end]);
        }
        assert_eq!(told(wait), "wait");
        // Another path, or another method, is hyper's as soon as it is read.
        assert_eq!(told("GET /_mock/runs HTTP/1.1\r\n"), "hyper");
        assert_eq!(told("GET /_mock/runs/a/history "), "hyper");
        assert_eq!(told("HEAD /_mock/runs/a/wait "), "hyper");
        assert_eq!(
            told("GET /_mock/runs/a/wait HTTP/1.1\r\nHost x\r\n\r\n"),
            "hyper"
        );
        // What follows the head is kept for hyper.
        let pipelined = format!("{wait}GET /metrics");
        let Some(Classified::Wait(read)) = classify(pipelined.as_bytes()) else {
            panic!("not a wait");
        };
        assert_eq!(read.rest.as_deref(), Some(&b"GET /metrics"[..]));
        assert_eq!(read.request.uri(), "/_mock/runs/a/wait");
    }

    #[test]
    fn a_close_is_asked_for_by_a_token_of_any_connection_header() {
        let mut headers = HeaderMap::new();
        assert!(!asks_to_close(&headers));
        headers.append(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!asks_to_close(&headers));
        headers.append(CONNECTION, HeaderValue::from_static("te, Close"));
        assert!(asks_to_close(&headers));
    }

    mod over_a_socket {
        //! `serve` itself, over a loopback connection, with a stack that answers every
        //! request with its path: what it answers, and where it leaves the connection.

        use std::convert::Infallible;
        use std::time::Instant;

        use axum::response::Response;
        use tokio::net::TcpListener;

        use super::super::*;

        /// A connected pair: the client's end, and the server's as `serve` gets it.
        async fn connected() -> (TcpStream, Tracked, Arc<Activity>) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
            let client = TcpStream::connect(listener.local_addr().expect("an address"));
            let (client, accepted) = tokio::join!(client, listener.accept());
            let activity = Arc::new(Activity::new(Instant::now()));
            let (server, _) = accepted.expect("accepts");
            let tracked = Tracked::new(server, &activity, true);
            (client.expect("connects"), tracked, activity)
        }

        /// Answers each request with its path and query; never, for a path with `never`.
        fn echo() -> impl api::Answers {
            tower::service_fn(|request: Request<Body>| async move {
                let echoed = request.uri().to_string();
                if echoed.contains("never") {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(Response::new(Body::from(echoed)))
            })
        }

        async fn served(server: Tracked, activity: Arc<Activity>) -> Next {
            serve(server, echo(), activity, CancellationToken::new())
                .await
                .expect("no socket error")
        }

        async fn read_to_end(client: &mut TcpStream) -> String {
            let mut text = String::new();
            client.read_to_string(&mut text).await.expect("reads");
            text
        }

        #[tokio::test]
        async fn a_wait_is_answered_here_and_the_connection_is_given_back_for_the_next() {
            let (mut client, server, activity) = connected().await;
            client
                .write_all(b"GET /_mock/runs/a/wait?timeout=1s HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("writes");
            let Next::Again(server) = served(server, Arc::clone(&activity)).await else {
                panic!("not given back");
            };
            assert!(!activity.busy(), "answered");
            drop(server);
            let answer = read_to_end(&mut client).await;
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(answer.contains("\r\ncontent-length: 29\r\n"), "{answer}");
            assert!(
                answer.ends_with("\r\n\r\n/_mock/runs/a/wait?timeout=1s"),
                "{answer}"
            );
        }

        #[tokio::test]
        async fn another_request_goes_to_hyper_with_every_byte_read_put_back() {
            let (mut client, server, activity) = connected().await;
            let request = "GET /_mock/runs/a/history HTTP/1.1\r\nHost: x\r\n\r\n";
            client.write_all(request.as_bytes()).await.expect("writes");
            let Next::Hyper(mut server) = served(server, activity).await else {
                panic!("not handed to hyper");
            };
            let mut again = vec![0; request.len()];
            server.read_exact(&mut again).await.expect("reads back");
            assert_eq!(again, request.as_bytes());
            drop(client);
        }

        #[tokio::test]
        async fn a_peer_that_hangs_up_ends_the_wait_unanswered() {
            let (mut client, server, activity) = connected().await;
            client
                .write_all(b"GET /_mock/runs/never/wait HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("writes");
            client.shutdown().await.expect("half-closes");
            assert!(matches!(
                served(server, Arc::clone(&activity)).await,
                Next::Close
            ));
            assert!(!activity.busy(), "nothing left in flight");
            assert_eq!(read_to_end(&mut client).await, "");
        }

        #[tokio::test]
        async fn a_pipelined_request_is_answered_after_the_wait_even_past_a_half_close() {
            let (mut client, server, activity) = connected().await;
            let next = "GET /metrics HTTP/1.1\r\n\r\n";
            client
                .write_all(
                    format!("GET /_mock/runs/a/wait HTTP/1.1\r\nHost: x\r\n\r\n{next}").as_bytes(),
                )
                .await
                .expect("writes");
            client.shutdown().await.expect("half-closes");
            let Next::Hyper(mut server) = served(server, activity).await else {
                panic!("not handed to hyper");
            };
            let mut again = vec![0; next.len()];
            server.read_exact(&mut again).await.expect("reads back");
            assert_eq!(again, next.as_bytes());
            drop(server);
            let answer = read_to_end(&mut client).await;
            assert!(answer.ends_with("\r\n\r\n/_mock/runs/a/wait"), "{answer}");
        }
    }
}
