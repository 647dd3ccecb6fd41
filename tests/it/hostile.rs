//! The built binary against stuck peers: SIGTERM with half-sent requests, open waits
//! and event streams; the file-descriptor limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::process::{TempDir, binary, start, start_command, start_logging, wait_for_log};

/// The longest a step may take before the test fails.
const BOUND: Duration = Duration::from_secs(20);

fn addr_of(base: &str) -> &str {
    base.trim_start_matches("http://")
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(BOUND)).expect("a timeout");
    stream
}

/// Reads until the service closes the connection.
fn until_closed(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    match stream.read_to_end(&mut text) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed: {e}"),
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn sigterm_with_a_half_sent_head_exits_zero_at_once() {
    // A deadline far beyond the bound below: the connection must be closed at once, not
    // cut off at the deadline.
    let (child, base) = start(&["--port", "0", "--shutdown-timeout", "60s"], &[]);
    let addr = addr_of(&base);
    let mut half = connect(addr);
    half.write_all(b"POST /job-launcher/launcher/status HTTP/1.1\r\nHost: test\r\nContent-Ty")
        .expect("writes");
    // A kept-alive connection, idle after its answer, and one that has sent nothing.
    let mut idle = connect(addr);
    idle.write_all(b"GET /actuator/health HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("writes");
    let mut line = String::new();
    BufReader::new(&idle)
        .read_line(&mut line)
        .expect("an answer");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // The same for a wait, which is read and answered beside hyper.
    let mut waited = connect(addr);
    waited
        .write_all(b"GET /_mock/runs/none/wait?timeout=1ms HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("writes");
    let mut line = String::new();
    BufReader::new(&waited)
        .read_line(&mut line)
        .expect("an answer");
    assert!(line.starts_with("HTTP/1.1 408"), "{line}");
    let mut half_wait = connect(addr);
    half_wait
        .write_all(b"GET /_mock/runs/none/wait?timeout=1m HTTP/1.1\r\nHo")
        .expect("writes");
    let mut silent = connect(addr);

    child.signal(Signal::SIGTERM);
    let (status, took) = child.exit_within(BOUND);
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(until_closed(&mut half), "", "closed without an answer");
    assert_eq!(until_closed(&mut silent), "");
    assert_eq!(until_closed(&mut half_wait), "", "closed without an answer");
    // The rest of their answers, if any was left unread, then the end.
    let _ = until_closed(&mut idle);
    let _ = until_closed(&mut waited);
}

#[test]
#[ignore = "slow (1 s): waits out --shutdown-timeout; CI runs it with --include-ignored"]
fn sigterm_with_a_half_sent_body_exits_zero_at_the_deadline_and_applies_nothing() {
    let dir = TempDir::new("half-body");
    let args = [
        "--port",
        "0",
        "--data-dir",
        dir.path(),
        "--shutdown-timeout",
        "1s",
    ];
    let (child, base, logs) = start_logging(&args);
    let addr = addr_of(&base);
    // An update that arrives whole, to show what the directory keeps.
    let kept = br#"{"jobId":"kept","state":"running"}"#;
    let mut whole = connect(addr);
    let head = |length: usize, id: &str| {
        format!(
            "POST /job-launcher/launcher/status HTTP/1.1\r\nHost: test\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\
             x-request-id: {id}\r\n\r\n"
        )
    };
    whole
        .write_all(head(kept.len(), "kept").as_bytes())
        .expect("writes");
    whole.write_all(kept).expect("writes");
    let mut line = String::new();
    BufReader::new(&whole)
        .read_line(&mut line)
        .expect("an answer");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");

    let cut = br#"{"jobId":"cut","state":"running"}"#;
    let mut half = connect(addr);
    half.write_all(head(cut.len(), "half-cut").as_bytes())
        .expect("writes");
    half.write_all(&cut[..12]).expect("writes");
    // In flight: its head is read and it waits for the rest of its body.
    wait_for_log(
        &logs,
        r#"request_id="half-cut"}: job_launcher_mock::api::layers: started"#,
    );
    let began = Instant::now();
    child.signal(Signal::SIGTERM);
    let (status, took) = child.exit_within(BOUND);
    assert_eq!(status.code(), Some(0));
    // Cut off at the deadline (1 s), not at the request timeout (30 s).
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "exited before the deadline"
    );
    let rest = until_closed(&mut half);
    assert!(rest.is_empty(), "the cut-off request was answered: {rest}");

    let (mut again, base) = start(&["--port", "0", "--data-dir", dir.path()], &[]);
    let run = |job_id: &str| {
        let mut stream = connect(addr_of(&base));
        let request =
            format!("GET /_mock/runs/{job_id} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("writes");
        until_closed(&mut stream)
    };
    assert!(run("kept").starts_with("HTTP/1.1 200"));
    assert!(run("cut").starts_with("HTTP/1.1 404"), "{}", run("cut"));
    again.signal(Signal::SIGTERM);
    assert_eq!(again.wait().expect("the process ends").code(), Some(0));
}

/// Raises this process's soft limit on open files to `needed`, which the binary it
/// starts inherits; false when the hard limit does not allow it.
fn allow_open_files(needed: u64) -> bool {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return false;
    };
    if soft >= needed {
        return true;
    }
    hard >= needed && setrlimit(Resource::RLIMIT_NOFILE, needed.max(soft), hard).is_ok()
}

/// A gauge's value from `/metrics`.
fn gauge(addr: &str, name: &str) -> Option<u64> {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("writes");
    let text = until_closed(&mut stream);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
#[ignore = "slow (4 s): 1,100 connections; CI runs it with --include-ignored"]
fn sigterm_with_a_thousand_waits_and_a_hundred_event_streams_answers_them_and_exits_zero() {
    const WAITS: usize = 1000;
    const STREAMS: usize = 100;
    if !allow_open_files(4 * (WAITS + STREAMS) as u64) {
        eprintln!(
            "SKIPPED: the hard limit on open files is below {}; raise it (ulimit -Hn) to run this test",
            4 * (WAITS + STREAMS)
        );
        return;
    }
    let (child, base) = start(&["--port", "0", "--shutdown-timeout", "10s"], &[]);
    let addr = addr_of(&base);
    let mut waits = Vec::new();
    for n in 0..WAITS {
        let mut stream = connect(addr);
        let request =
            format!("GET /_mock/runs/never-{n}/wait?timeout=10m HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("writes");
        waits.push(stream);
    }
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /_mock/events HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("writes");
        streams.push(stream);
    }
    let all_open = Instant::now() + BOUND;
    while gauge(addr, "jlm_waiters") != Some(WAITS as u64)
        || gauge(addr, "jlm_event_subscribers") != Some(STREAMS as u64)
    {
        assert!(
            Instant::now() < all_open,
            "the waits and streams did not all open"
        );
    }

    child.signal(Signal::SIGTERM);
    let (status, took) = child.exit_within(BOUND);
    assert_eq!(status.code(), Some(0));
    // Well before the deadline (10 s): they ended, they were not cut off.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    for mut wait in waits {
        let answer = until_closed(&mut wait);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(answer.contains("shutting down"), "{answer}");
    }
    for mut stream in streams {
        let answer = until_closed(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The chunked body's last chunk: the stream ended rather than being cut.
        assert!(answer.ends_with("0\r\n\r\n"), "{answer:?}");
    }
}

#[test]
#[ignore = "slow (3 s): counts warnings over 3 s; CI runs it with --include-ignored"]
fn at_the_descriptor_limit_it_backs_off_logs_once_a_second_and_serves_again() {
    const LIMIT: u32 = 64;
    const LINE: &str = "cannot accept connections";
    let Ok(_) = Command::new("prlimit").arg("--version").output() else {
        panic!("prlimit (util-linux) is needed to run the binary with a descriptor limit");
    };
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={LIMIT}:{LIMIT}"))
        .arg("--")
        .arg(binary().get_program());
    command.args(["--port", "0"]).env("RUST_LOG", "warn");
    let (mut child, base, logs) = start_command(command);
    let addr = addr_of(&base);

    // More connections than descriptors: the first are served, the rest wait.
    let mut open = Vec::new();
    for _ in 0..LIMIT + 16 {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /actuator/health HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("writes");
        open.push(stream);
    }
    wait_for_log(&logs, LINE);
    // Count the warnings over a window of three seconds: at most one a second.
    let window = Instant::now() + Duration::from_secs(3);
    let mut lines = 0;
    while let Some(left) = window.checked_duration_since(Instant::now()) {
        match logs.recv_timeout(left) {
            Ok(line) if line.contains(LINE) => lines += 1,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(e) => panic!("the logs ended: {e}"),
        }
    }
    assert!(lines <= 4, "{lines} warnings in 3 s");

    // The connections it accepted are served meanwhile.
    let mut first = open.remove(0);
    first
        .write_all(b"GET /actuator/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("writes");
    let answers = until_closed(&mut first);
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 2, "{answers}");

    // Descriptors come free: the waiting connections are accepted, and new ones too.
    drop(open);
    let mut fresh = connect(addr);
    fresh
        .write_all(b"GET /actuator/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("writes");
    assert!(until_closed(&mut fresh).starts_with("HTTP/1.1 200"));
    child.signal(Signal::SIGTERM);
    assert_eq!(child.wait().expect("the process ends").code(), Some(0));
}
