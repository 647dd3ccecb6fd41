//! The built binary in a process of its own: started on a free port, its readiness line
//! read, its logs followed, and killed when dropped if it still runs; and directories
//! of a test's own for its `--data-dir` and files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

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

impl Running {
    /// Sends a signal at once (no `kill` process to start, which would give the service
    /// time to get ready for it).
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.0.id()).expect("a pid"));
        nix::sys::signal::kill(pid, signal).expect("the signal is sent");
    }

    /// Waits for the process to end by itself, at most `bound` (then kills it and fails
    /// the test); gives its status and how long it took. It blocks: from async code,
    /// call it in `spawn_blocking`.
    pub fn exit_within(self, bound: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let pid = Pid::from_raw(i32::try_from(self.0.id()).expect("a pid"));
        let (done, ended) = mpsc::channel();
        // `wait` blocks: a thread does it, so that the test can give up on a process that
        // never ends (and dropping `self` there kills nothing that has exited).
        std::thread::spawn(move || {
            let mut running = self;
            let _ = done.send(running.0.wait());
        });
        match ended.recv_timeout(bound) {
            Ok(Ok(status)) => (status, started.elapsed()),
            Ok(Err(e)) => panic!("cannot wait for the process: {e}"),
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                panic!("the process was still running {bound:?} after the signal");
            }
        }
    }

    /// [`Running::exit_within`] from async code, without blocking the runtime.
    pub async fn exited_within(self, bound: Duration) -> (ExitStatus, Duration) {
        tokio::task::spawn_blocking(move || self.exit_within(bound))
            .await
            .expect("the waiting thread ends")
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

/// The binary as a command, with warnings logged: to run it behind a wrapper (`prlimit`),
/// or to read what it prints when it does not start.
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

/// A directory of the test's own (the `tempfile` crate's), removed when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new empty directory whose name starts with `jlm-NAME-`.
    pub fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("jlm-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        TempDir(dir)
    }

    /// A directory holding one file, `name`, with `text` in it; gives the directory
    /// (which holds the file) and the file's path.
    pub fn with_file(name: &str, text: &str) -> (TempDir, PathBuf) {
        let dir = TempDir::new(name);
        let path = dir.join(name);
        std::fs::write(&path, text).expect("the file is written");
        (dir, path)
    }

    pub fn path(&self) -> &str {
        self.0.path().to_str().expect("a UTF-8 path")
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}
