//! Over real sockets: a wait sent over HTTP/1 is read and answered beside hyper
//! (`src/serve/lean.rs`), so that an open one holds little memory. These tests hold it
//! to answering as hyper would, to leaving the connection as it found it, and to
//! handing anything it does not answer to hyper intact.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use job_launcher_mock::MockServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::support::http::Client;
use crate::support::{SEED, STATUS, serve, update};

/// The longest any step may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);

/// One answer off a connection, with a `content-length` body.
struct Answer {
    status_line: String,
    /// The header lines, as sent.
    headers: Vec<String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The header names in the order they came.
    fn names(&self) -> Vec<String> {
        let names = self.headers.iter().filter_map(|line| line.split_once(':'));
        names.map(|(name, _)| name.to_ascii_lowercase()).collect()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A connection that reads answers one at a time, keeping what it read past one.
struct Wire {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Wire {
    async fn connect(server: &MockServer) -> Wire {
        Wire {
            stream: TcpStream::connect(server.address())
                .await
                .expect("connects"),
            read: Vec::new(),
        }
    }

    async fn send(&mut self, request: &str) {
        self.stream
            .write_all(request.as_bytes())
            .await
            .expect("writes");
    }

    /// The next answer; fails if the connection closes first.
    async fn answer(&mut self) -> Answer {
        loop {
            if let Some(end) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.read[..end].to_vec()).expect("a text head");
                let mut lines = head.split("\r\n").map(str::to_owned);
                let status_line = lines.next().unwrap_or_default();
                let headers: Vec<String> = lines.collect();
                let length = headers
                    .iter()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let body_at = end + 4;
                if self.read.len() >= body_at + length {
                    let body = String::from_utf8(self.read[body_at..body_at + length].to_vec())
                        .expect("a text body");
                    self.read.drain(..body_at + length);
                    return Answer {
                        status_line,
                        headers,
                        body,
                    };
                }
            }
            let mut buf = [0; 4096];
            let n = timeout(BOUND, self.stream.read(&mut buf))
                .await
                .expect("an answer in time")
                .expect("readable");
            assert!(n > 0, "closed before an answer: {:?}", self.read);
            self.read.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads until the service closes the connection; fails if it is still open after
    /// [`BOUND`]. What came before the close.
    async fn until_closed(&mut self) -> Vec<u8> {
        let mut buf = [0; 4096];
        loop {
            match timeout(BOUND, self.stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return std::mem::take(&mut self.read),
                Ok(Ok(n)) => self.read.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the connection is still open after {BOUND:?}"),
            }
        }
    }
}

const HEALTH: &str = "GET /actuator/health HTTP/1.1\r\nHost: test\r\n\r\n";

fn wait(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Waits until `n` requests are waiting, as `/metrics` counts them.
async fn until_waiting(client: &Client, n: u64) {
    let deadline = Instant::now() + BOUND;
    let wanted = format!("jlm_waiters {n}");
    loop {
        let (_, metrics) = client.get_text("/metrics").await;
        if metrics.lines().any(|line| line == wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "not {n} waiting: {metrics}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_wait_is_answered_as_hyper_answers_it_and_its_connection_serves_on() {
    let server = serve(MockServer::builder()).await;
    let client = Client::of(&server);
    let mut wire = Wire::connect(&server).await;

    wire.send(&wait("/_mock/runs/w/wait?state=running&timeout=1m"))
        .await;
    until_waiting(&client, 1).await;
    assert_eq!(client.post_status(&update("w", "running")).await.0, 200);
    let lean = wire.answer().await;
    assert_eq!(lean.status_line, "HTTP/1.1 200 OK");
    assert_eq!(lean.json()["state"], "running");
    assert_eq!(lean.header("content-type"), Some("application/json"));
    assert!(
        lean.header("date")
            .is_some_and(|date| date.ends_with(" GMT"))
    );
    // A wait after a wait: the connection was given back, and is read the same way.
    wire.send(&wait("/_mock/runs/w/wait?timeout=1m")).await;
    until_waiting(&client, 1).await;
    assert_eq!(client.post_status(&update("w", "finished")).await.0, 200);
    assert_eq!(wire.answer().await.json()["state"], "finished");

    // The same connection goes on: a status update, which hyper answers (it has a body),
    // then the same wait again, now on hyper's connection, for comparison.
    let body = SEED;
    wire.send(&format!(
        "POST {STATUS} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    assert_eq!(wire.answer().await.status_line, "HTTP/1.1 200 OK");
    wire.send(&wait("/_mock/runs/w/wait?state=finished&timeout=1m"))
        .await;
    let hyper = wire.answer().await;
    assert_eq!(hyper.status_line, lean.status_line);
    assert_eq!(hyper.names(), lean.names());
    assert_eq!(hyper.json()["jobId"], lean.json()["jobId"]);

    // A timeout answers the same through both, and so does a wait in a session.
    let session = server.session().await.expect("a session");
    let in_session = format!(
        "/sessions/{}/_mock/runs/none/wait?timeout=1ms",
        session.id()
    );
    let mut fresh = Wire::connect(&server).await;
    fresh.send(&wait(&in_session)).await;
    let lean = fresh.answer().await;
    wire.send(&wait(&in_session)).await;
    let hyper = wire.answer().await;
    assert_eq!(lean.status_line, "HTTP/1.1 408 Request Timeout");
    assert_eq!(hyper.status_line, lean.status_line);
    assert_eq!(hyper.names(), lean.names());
    assert_eq!(lean.json()["path"], hyper.json()["path"]);
    assert_eq!(lean.json()["message"], hyper.json()["message"]);
}

#[tokio::test]
async fn requests_pipelined_behind_a_wait_are_answered_in_order() {
    let server = serve(MockServer::builder()).await;
    let mut wire = Wire::connect(&server).await;
    wire.send(&format!(
        "{}{}{}",
        wait("/_mock/runs/a/wait?timeout=1ms"),
        HEALTH,
        wait("/_mock/runs/b/wait?timeout=1ms"),
    ))
    .await;
    let first = wire.answer().await;
    assert_eq!(first.json()["path"], "/_mock/runs/a/wait");
    assert_eq!(wire.answer().await.json()["status"], "UP");
    let third = wire.answer().await;
    assert_eq!(third.json()["path"], "/_mock/runs/b/wait");
}

#[tokio::test]
async fn a_wait_asking_to_close_gets_its_answer_then_the_connection_closes() {
    let server = serve(MockServer::builder()).await;
    let mut wire = Wire::connect(&server).await;
    wire.send(
        "GET /_mock/runs/a/wait?timeout=1ms HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = wire.answer().await;
    assert_eq!(answer.status_line, "HTTP/1.1 408 Request Timeout");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(wire.until_closed().await.is_empty());
}

#[tokio::test]
async fn a_client_that_hangs_up_or_half_closes_ends_its_wait() {
    let server = serve(MockServer::builder()).await;
    let client = Client::of(&server);
    let mut gone = Wire::connect(&server).await;
    gone.send(&wait("/_mock/runs/a/wait?timeout=1m")).await;
    let mut half = Wire::connect(&server).await;
    half.send(&wait("/_mock/runs/b/wait?timeout=1m")).await;
    until_waiting(&client, 2).await;

    drop(gone);
    until_waiting(&client, 1).await;
    half.stream.shutdown().await.expect("half-closes");
    until_waiting(&client, 0).await;
    assert!(
        half.until_closed().await.is_empty(),
        "no answer to a half-closed wait"
    );
}

#[tokio::test]
async fn a_wait_this_path_does_not_answer_is_answered_by_hyper_all_the_same() {
    let server = serve(MockServer::builder()).await;
    let wait = "GET /_mock/runs/a/wait?timeout=1ms";
    for (request, status_line) in [
        // A body, which a wait does not read, and a request behind it: hyper reads the
        // body as a body, so the request behind it is answered as one.
        (
            format!("{wait} HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{{}}{HEALTH}"),
            "HTTP/1.1 408 Request Timeout",
        ),
        // HTTP/1.0, answered in its own version.
        (
            format!("{wait} HTTP/1.0\r\nHost: test\r\n\r\n"),
            "HTTP/1.0 408 Request Timeout",
        ),
        // A head too large for the path beside hyper, not for hyper.
        (
            format!(
                "{wait} HTTP/1.1\r\nHost: test\r\nX-Large: {}\r\n\r\n",
                "a".repeat(5000)
            ),
            "HTTP/1.1 408 Request Timeout",
        ),
        // Not a head at all: hyper's 400.
        (
            format!("{wait} HTTP/1.1\r\nHost test\r\n\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
    ] {
        let mut wire = Wire::connect(&server).await;
        wire.send(&request).await;
        assert_eq!(wire.answer().await.status_line, status_line, "{request}");
        if request.ends_with(HEALTH) {
            assert_eq!(wire.answer().await.json()["status"], "UP", "{request}");
        }
    }
    // A head that turns out not to be a wait's, sent in pieces. (How the server's reads
    // split them is the kernel's to say; `lean.rs`'s unit test of `classify` tries every
    // prefix of a head.)
    let mut wire = Wire::connect(&server).await;
    for piece in ["GET /_mock/r", "uns HTTP/1.1\r\n", "Host: test\r\n\r\n"] {
        wire.send(piece).await;
        tokio::task::yield_now().await;
    }
    let list = wire.answer().await;
    assert_eq!(list.status_line, "HTTP/1.1 200 OK");
    assert_eq!(list.json()["total"], 0);
}

#[tokio::test]
async fn a_half_sent_wait_head_is_closed_at_the_header_timeout() {
    let server = serve(MockServer::builder().header_timeout(Duration::from_millis(300))).await;
    let started = Instant::now();
    let mut wire = Wire::connect(&server).await;
    wire.send("GET /_mock/runs/a/wait?timeout=1m HTTP/1.1\r\nX-Slow: ")
        .await;
    assert!(wire.until_closed().await.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "closed too soon: {took:?}"
    );
}

#[tokio::test]
async fn a_peer_that_half_closes_behind_a_pipelined_request_still_gets_the_wait_s_answer() {
    // As from hyper, which watches for the close only once it has nothing left to read:
    // the wait is answered, and then the connection closes, the request behind it
    // unanswered (hyper does not answer a request once the peer has half-closed).
    let server = serve(MockServer::builder()).await;
    let mut wire = Wire::connect(&server).await;
    wire.send(&format!(
        "{}{HEALTH}",
        wait("/_mock/runs/a/wait?timeout=200ms")
    ))
    .await;
    wire.stream.shutdown().await.expect("half-closes");
    assert_eq!(
        wire.answer().await.status_line,
        "HTTP/1.1 408 Request Timeout"
    );
    wire.until_closed().await;
}

#[tokio::test]
async fn after_its_answer_a_wait_s_connection_gets_the_idle_timeout() {
    let server = serve(MockServer::builder().idle_timeout(Duration::from_millis(300))).await;
    let mut wire = Wire::connect(&server).await;
    wire.send(&wait("/_mock/runs/a/wait?timeout=1ms")).await;
    wire.answer().await;
    let answered = Instant::now();
    assert!(wire.until_closed().await.is_empty());
    let took = answered.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed too soon: {took:?}"
    );
}

#[tokio::test]
async fn a_head_pipelined_behind_a_wait_and_never_finished_gets_the_header_timeout() {
    // The idle timeout is far beyond the bound: what closes it is the header timeout.
    let builder = MockServer::builder()
        .header_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_secs(600));
    let server = serve(builder).await;
    let mut wire = Wire::connect(&server).await;
    wire.send(&format!(
        "{}GET /actuator/health HTTP/1.1\r\nX-Slow: ",
        wait("/_mock/runs/a/wait?timeout=1ms")
    ))
    .await;
    assert_eq!(
        wire.answer().await.status_line,
        "HTTP/1.1 408 Request Timeout"
    );
    assert!(wire.until_closed().await.is_empty());
}

#[tokio::test]
async fn a_peer_that_stops_reading_its_answer_is_closed_at_the_idle_timeout() {
    // One connection at a time: the next is served only once the stuck one is closed.
    let builder = MockServer::builder()
        .max_connections(NonZeroUsize::MIN)
        .max_body_bytes(NonZeroUsize::new(8 << 20).expect("not zero"))
        .idle_timeout(Duration::from_millis(300));
    let server = serve(builder).await;
    // A run whose status is 4 MB, far more than the two ends' socket buffers hold.
    let mut big = update("big", "running");
    big["pad"] = "x".repeat(4 << 20).into();
    let body = big.to_string();
    let mut setup = Wire::connect(&server).await;
    setup
        .send(&format!(
            "POST {STATUS} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await;
    assert_eq!(setup.answer().await.status_line, "HTTP/1.1 200 OK");
    setup.until_closed().await;

    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let mut stuck = socket.connect(server.address()).await.expect("connects");
    stuck
        .write_all(wait("/_mock/runs/big/wait?state=running&timeout=1m").as_bytes())
        .await
        .expect("writes");
    // Never read: its answer cannot all be written, and it must not keep the only place.
    let mut next = Wire::connect(&server).await;
    next.send(HEALTH).await;
    assert_eq!(next.answer().await.json()["status"], "UP");
    drop(stuck);
}

#[tokio::test]
async fn a_connection_that_spoke_http1_for_a_wait_cannot_turn_to_http2() {
    let server = serve(MockServer::builder()).await;
    let mut wire = Wire::connect(&server).await;
    wire.send(&wait("/_mock/runs/a/wait?timeout=1ms")).await;
    wire.answer().await;
    // HTTP/2's preface, then an empty SETTINGS frame: as hyper's HTTP/1 connection
    // would, the service closes the connection rather than answering in HTTP/2.
    wire.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await;
    let after = wire.until_closed().await;
    assert!(
        after.is_empty() || after.starts_with(b"HTTP/1.1 "),
        "{after:?}"
    );
}
