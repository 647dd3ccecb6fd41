//! The built binary: flags and environment, the readiness line, graceful shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::http::Client;
use crate::support::process::{TempDir, binary, start, start_logging, wait_for_log};

async fn post(base: &str, body: Value) -> u16 {
    Client::new(base).post_status(&body).await.0
}

#[tokio::test]
async fn flags_beat_environment_and_sigterm_exits_zero() {
    let (mut child, base) = start(
        &["--port", "0", "--max-runs", "5"],
        &[("JLM_VALIDATION", "lenient"), ("JLM_MAX_RUNS", "1")],
    );
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(!base.ends_with(":0"), "{base}");

    // Lenient, from the environment: a forbidden transition is accepted.
    assert_eq!(
        post(&base, json!({"jobId": "r1", "state": "finished"})).await,
        200
    );
    assert_eq!(
        post(&base, json!({"jobId": "r1", "state": "running"})).await,
        200
    );
    // --max-runs 5 from the command line, not 1 from the environment.
    assert_eq!(
        post(&base, json!({"jobId": "r2", "state": "running"})).await,
        200
    );

    child.signal(Signal::SIGTERM);
    let status = child.wait().expect("the process ends");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn ctrl_c_exits_zero() {
    let (mut child, base) = start(&["--port", "0"], &[("JLM_VALIDATION", "strict")]);
    assert_eq!(
        post(&base, json!({"jobId": "r1", "state": "finished"})).await,
        200
    );
    assert_eq!(
        post(&base, json!({"jobId": "r1", "state": "running"})).await,
        409
    );
    child.signal(Signal::SIGINT);
    assert_eq!(child.wait().expect("the process ends").code(), Some(0));
}

#[test]
fn a_signal_right_after_the_readiness_line_still_exits_zero() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let (mut child, _) = start(&["--port", "0"], &[]);
        child.signal(sig);
        let status = child.wait().expect("the process ends");
        assert_eq!(status.code(), Some(0), "{sig}: {status}");
    }
}

#[test]
fn a_bad_flag_is_refused_before_listening() {
    let output = binary()
        .args(["--validation", "loose"])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("strict"));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let (mut child, base, logs) = start_logging(&["--port", "0"]);
    let addr = base.trim_start_matches("http://");

    // Half a request: the handler is waiting for the rest of the body.
    let body = r#"{"jobId":"drain","state":"running"}"#;
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout");
    let head = format!(
        "POST /job-launcher/launcher/status HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("writes");
    stream.write_all(&body.as_bytes()[..10]).expect("writes");
    wait_for_log(&logs, "started processing request");

    child.signal(Signal::SIGTERM);
    wait_for_log(&logs, "SIGTERM received");
    stream
        .write_all(&body.as_bytes()[10..])
        .expect("writes the rest");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("an answer, then the connection closes");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""jobId":"drain""#), "{answer}");
    assert_eq!(child.wait().expect("the process ends").code(), Some(0));
}

#[tokio::test]
async fn scenarios_come_from_the_file_and_a_reset_brings_them_back() {
    let (_dir, file) = TempDir::with_file(
        "scenarios.json",
        &json!([
            {"match": "nightly-*", "steps": [{"state": "running", "after": "1m"},
                                             {"state": "error", "after": "1m"}]},
            {"match": "exact", "progression": "polls", "steps": [{"state": "skipped"}]}
        ])
        .to_string(),
    );
    let file = file.to_str().unwrap();
    let (mut child, base) = start(
        &["--port", "0", "--clock", "manual", "--scenarios", file],
        &[],
    );
    let client = Client::new(&base);
    let scenarios: Value = client.get_ok("/_mock/scenarios").await;
    let matches: Vec<&str> = scenarios
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["match"].as_str().unwrap())
        .collect();
    assert_eq!(matches, ["nightly-*", "exact"]);
    let deleted = client.call(reqwest::Method::DELETE, "/_mock/scenarios/exact");
    assert_eq!(deleted.await.0, 204);
    let reset = client.call(reqwest::Method::POST, "/_mock/reset");
    assert_eq!(reset.await.0, 204);
    let after_reset: Value = client.get_ok("/_mock/scenarios").await;
    assert_eq!(after_reset, scenarios);
    child.signal(Signal::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_scenarios_file_that_cannot_run_stops_the_start_with_its_reason() {
    let (_dir, file) = TempDir::with_file(
        "bad-scenarios.json",
        &json!([{"match": "ok", "steps": [{"state": "finished"}]},
                {"match": "bad", "steps": [{"state": "running"}]}])
        .to_string(),
    );
    for (args, needle) in [
        (
            vec!["--scenarios", file.to_str().unwrap()],
            "scenario 1 cannot run",
        ),
        (
            vec!["--scenarios", "/nonexistent/scenarios.json"],
            "cannot read the scenarios file",
        ),
    ] {
        let output = binary()
            .args(["--port", "0"])
            .args(&args)
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{stderr}");
        assert!(output.stdout.is_empty(), "it never said it was listening");
    }
}

#[tokio::test]
async fn secrets_appear_in_no_log_line() {
    let (mut child, base, logs) = start_logging(&[
        "--port",
        "0",
        "--api-key",
        "key-SECRET-1",
        "--basic-auth",
        "user:pass-SECRET-2",
        "--admin-token",
        "token-SECRET-3",
        "--log-format",
        "json",
    ]);
    let client = reqwest::Client::new();
    let status = format!("{base}/job-launcher/launcher/status");
    let body = json!({"jobId": "logged", "state": "running"}).to_string();
    for (name, value) in [
        ("x-api-key", "key-SECRET-1"),
        ("x-api-key", "wrong-SECRET-4"),
        ("authorization", "Basic dXNlcjpwYXNzLVNFQ1JFVC0y"),
    ] {
        client
            .post(&status)
            .header(name, value)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
    }
    client
        .get(format!("{base}/_mock/ui?access_token=token-SECRET-3"))
        .send()
        .await
        .unwrap();
    client
        .get(format!("{base}/_mock/runs"))
        .bearer_auth("token-SECRET-3")
        .send()
        .await
        .unwrap();
    child.signal(Signal::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // The process has exited: the lines end at its stderr's end.
    let all: Vec<String> = logs.iter().collect();
    assert!(
        all.iter().any(|l| l.contains("answered")),
        "request lines were logged: {all:?}"
    );
    for line in &all {
        assert!(!line.contains("SECRET"), "a secret in a log line: {line}");
    }
}
