//! The built binary: flags and environment, the readiness line, graceful shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::json;

/// The built binary's process, killed when dropped while it still runs, so that a test
/// that fails part-way leaves no server behind.
pub struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the binary and reads its readiness line; returns the process and the base URL.
/// Its logs are dropped; [`start_logging`] keeps them.
pub fn start(args: &[&str], env: &[(&str, &str)]) -> (Running, String) {
    spawn(args, env, Stdio::null())
}

/// Starts the binary with request-level logs, and returns them as they come.
pub fn start_logging(args: &[&str]) -> (Running, String, mpsc::Receiver<String>) {
    let env = [("RUST_LOG", "tower_http=debug,job_launcher_mock=debug")];
    let (mut child, base) = spawn(args, &env, Stdio::piped());
    let logs = log_lines(child.stderr.take().expect("stderr is piped"));
    (child, base, logs)
}

/// The binary as a command, with warnings logged: to run it behind a wrapper (`prlimit`).
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_job-launcher-mock"));
    command.env("RUST_LOG", "warn");
    command
}

/// Starts `command` (the binary, or a wrapper that runs it), reads its readiness line,
/// and returns it with its base URL and its log lines as they come.
pub fn start_command(mut command: Command) -> (Running, String, mpsc::Receiver<String>) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Running(command.spawn().expect("the binary starts"));
    let base = readiness(&mut child);
    let logs = log_lines(child.stderr.take().expect("stderr is piped"));
    (child, base, logs)
}

fn spawn(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> (Running, String) {
    let mut command = binary();
    command.args(args).stdout(Stdio::piped()).stderr(stderr);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = Running(command.spawn().expect("the binary starts"));
    let base = readiness(&mut child);
    (child, base)
}

/// Reads the readiness line; gives the base URL.
fn readiness(child: &mut Running) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("a readiness line");
    line.split("listening on ")
        .nth(1)
        .map(|url| url.trim().to_owned())
        .unwrap_or_else(|| panic!("no readiness line: {line:?}"))
}

/// Sends a signal at once (no `kill` process to start, which would give the service time
/// to get ready for it).
pub fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    nix::sys::signal::kill(pid, signal).expect("the signal is sent");
}

async fn post(base: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/job-launcher/launcher/status"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the service answers")
        .status()
        .as_u16()
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

    signal(&child, Signal::SIGTERM);
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
    signal(&child, Signal::SIGINT);
    assert_eq!(child.wait().expect("the process ends").code(), Some(0));
}

#[test]
fn a_signal_right_after_the_readiness_line_still_exits_zero() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let (mut child, _) = start(&["--port", "0"], &[]);
        signal(&child, sig);
        let status = child.wait().expect("the process ends");
        assert_eq!(status.code(), Some(0), "{sig}: {status}");
    }
}

#[test]
fn a_bad_flag_is_refused_before_listening() {
    let output = Command::new(env!("CARGO_BIN_EXE_job-launcher-mock"))
        .args(["--validation", "loose"])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("strict"));
}

/// The process's log lines, as they come.
pub fn log_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// Waits for a log line containing `needle`; fails after a generous bound.
pub fn wait_for_log(lines: &mpsc::Receiver<String>, needle: &str) {
    loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => {}
            Err(e) => panic!("no log line with {needle:?}: {e}"),
        }
    }
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

    signal(&child, Signal::SIGTERM);
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

/// A directory of the test's own, removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("jlm-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file in a directory of the test's own, removed (with the directory) when dropped.
struct TempFile {
    path: std::path::PathBuf,
    _dir: TempDir,
}

impl TempFile {
    fn with(name: &str, text: &str) -> TempFile {
        let dir = TempDir::new(name);
        let path = dir.join(name);
        std::fs::write(&path, text).expect("the file is written");
        TempFile { path, _dir: dir }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 path")
    }
}

#[tokio::test]
async fn scenarios_come_from_the_file_and_a_reset_brings_them_back() {
    let file = TempFile::with(
        "scenarios.json",
        &json!([
            {"match": "nightly-*", "steps": [{"state": "running", "after": "1m"},
                                             {"state": "error", "after": "1m"}]},
            {"match": "exact", "progression": "polls", "steps": [{"state": "skipped"}]}
        ])
        .to_string(),
    );
    let (mut child, base) = start(
        &[
            "--port",
            "0",
            "--clock",
            "manual",
            "--scenarios",
            file.path(),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let scenarios: serde_json::Value = client
        .get(format!("{base}/_mock/scenarios"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let matches: Vec<&str> = scenarios
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["match"].as_str().unwrap())
        .collect();
    assert_eq!(matches, ["nightly-*", "exact"]);
    client
        .delete(format!("{base}/_mock/scenarios/exact"))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/_mock/reset"))
        .send()
        .await
        .unwrap();
    let after_reset: serde_json::Value = client
        .get(format!("{base}/_mock/scenarios"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after_reset, scenarios);
    signal(&child, Signal::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_scenarios_file_that_cannot_run_stops_the_start_with_its_reason() {
    let file = TempFile::with(
        "bad-scenarios.json",
        &json!([{"match": "ok", "steps": [{"state": "finished"}]},
                {"match": "bad", "steps": [{"state": "running"}]}])
        .to_string(),
    );
    for (args, needle) in [
        (vec!["--scenarios", file.path()], "scenario 1 cannot run"),
        (
            vec!["--scenarios", "/nonexistent/scenarios.json"],
            "cannot read the scenarios file",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_job-launcher-mock"))
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
    signal(&child, Signal::SIGTERM);
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
