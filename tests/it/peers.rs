//! Over real sockets: slow, idle and surplus peers get the timeouts and the limit of
//! `--header-timeout`, `--idle-timeout`, `--request-timeout` and `--max-connections`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use job_launcher_mock::{MockServer, MockServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::support::{nonzero, serve};

/// The longest any step here may take before the test fails: far beyond the timeouts
/// under test, so that only a connection that is never closed fails it.
const BOUND: Duration = Duration::from_secs(10);

const HEALTH: &[u8] = b"GET /actuator/health HTTP/1.1\r\nHost: test\r\n\r\n";

/// The service on a free loopback port until dropped.
struct Served {
    addr: SocketAddr,
    _server: MockServer,
}

async fn serve_with(mock: MockServerBuilder) -> Served {
    let server = serve(mock).await;
    Served {
        addr: server.address(),
        _server: server,
    }
}

fn timeouts(header: u64, idle: u64) -> MockServerBuilder {
    MockServer::builder()
        .header_timeout(Duration::from_millis(header))
        .idle_timeout(Duration::from_millis(idle))
}

/// Reads until the service closes the connection; fails if it is still open after
/// [`BOUND`].
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = [0; 1024];
    loop {
        match timeout(BOUND, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection is still open after {BOUND:?}"),
        }
    }
}

/// Reads one answer with a `Content-Length` body off a kept-alive connection; gives
/// its status line.
async fn answer(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("readable");
        assert!(n > 0, "closed before an answer: {data:?}");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return head.lines().next().unwrap_or("").to_owned();
            }
        }
    }
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_is_closed_at_the_header_timeout() {
    let served = serve_with(timeouts(300, 30_000)).await;
    let started = Instant::now();
    let stream = TcpStream::connect(served.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A slowloris: one byte of a header every 50 ms, never the end of the head.
    let dribble = tokio::spawn(async move {
        writer
            .write_all(b"GET /actuator/health HTTP/1.1\r\nX-Slow: ")
            .await?;
        loop {
            writer.write_all(b"a").await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    until_closed(&mut reader).await;
    let took = started.elapsed();
    dribble.abort();
    assert!(
        took >= Duration::from_millis(300),
        "closed too soon: {took:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() {
    let served = serve_with(timeouts(300, 30_000)).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    until_closed(&mut stream).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "closed too soon: {took:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout_not_before() {
    // The idle timeout is longer than the header timeout: what closes it is the former.
    let served = serve_with(timeouts(200, 700)).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(answer(&mut stream).await, "HTTP/1.1 200 OK");
    // Kept alive: a second request on it is answered.
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(answer(&mut stream).await, "HTTP/1.1 200 OK");
    let idle = Instant::now();
    until_closed(&mut stream).await;
    let took = idle.elapsed();
    // The service counts from when it sent the answer, a little before it was read
    // here; 450 ms is well past the header timeout.
    assert!(
        took >= Duration::from_millis(450),
        "closed too soon: {took:?}"
    );
}

#[tokio::test]
async fn a_head_begun_on_a_kept_alive_connection_gets_the_header_timeout() {
    let served = serve_with(timeouts(300, 30_000)).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(answer(&mut stream).await, "HTTP/1.1 200 OK");
    let begun = Instant::now();
    stream.write_all(b"GET /actuator/health HT").await.unwrap();
    until_closed(&mut stream).await;
    let took = begun.elapsed();
    // Closed by the header timeout: the idle timeout is 30 s, beyond the bound.
    assert!(
        took >= Duration::from_millis(300),
        "closed too soon: {took:?}"
    );
}

#[tokio::test]
async fn a_body_that_stops_coming_is_answered_408_at_the_request_timeout() {
    let served =
        serve_with(timeouts(30_000, 30_000).request_timeout(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    let body = br#"{"jobId":"half","state":"running"}"#;
    let head = format!(
        "POST /job-launcher/launcher/status HTTP/1.1\r\nHost: test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    assert_eq!(answer(&mut stream).await, "HTTP/1.1 408 Request Timeout");
    // The rest of the body would be read as the next request: the service closes it.
    until_closed(&mut stream).await;
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    let served = serve_with(MockServer::builder().max_connections(nonzero(2))).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(served.addr).await.unwrap();
        stream.write_all(HEALTH).await.unwrap();
        assert_eq!(answer(&mut stream).await, "HTTP/1.1 200 OK");
        open.push(stream);
    }
    // The kernel completes the third handshake, but the service does not take it.
    let mut third = TcpStream::connect(served.addr).await.unwrap();
    third.write_all(HEALTH).await.unwrap();
    let mut buf = [0; 64];
    let early = timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "answered past the limit: {early:?}");
    // The two still open are served meanwhile.
    open[1].write_all(HEALTH).await.unwrap();
    assert_eq!(answer(&mut open[1]).await, "HTTP/1.1 200 OK");
    drop(open.remove(0));
    assert_eq!(answer(&mut third).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_request_whose_first_byte_comes_alone_is_served() {
    // "P" could begin HTTP/2's preface as well as a POST: the service reads on to tell.
    let served = serve_with(MockServer::builder()).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    let body = br#"{"jobId":"split","state":"running"}"#;
    let request = format!(
        "POST /job-launcher/launcher/status HTTP/1.1\r\nHost: test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    stream.set_nodelay(true).unwrap();
    stream.write_all(&request.as_bytes()[..1]).await.unwrap();
    // The client pauses after its first byte, so that it arrives alone; whenever the
    // rest comes, the answer must be the same.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&request.as_bytes()[1..]).await.unwrap();
    assert_eq!(answer(&mut stream).await, "HTTP/1.1 200 OK");
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(answer(&mut stream).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_and_closed_when_idle() {
    let served = serve_with(timeouts(30_000, 500)).await;
    let stream = TcpStream::connect(served.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{}/actuator/health", served.addr))
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    drop(response);
    let idle = Instant::now();
    // The service closes the idle connection; the client's connection future ends.
    let ended = timeout(BOUND, connection).await;
    assert!(
        ended.is_ok(),
        "the HTTP/2 connection is still open after {BOUND:?}"
    );
    let took = idle.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed too soon: {took:?}"
    );
}
