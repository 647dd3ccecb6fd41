//! The command-line flags, each also read from a `JLM_` environment variable
//! (the README's flags table); a flag given on the command line wins.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "cli")]
use clap::Parser;

pub use crate::clock::ClockMode;

/// A stand-in for Lucidworks Fusion's job-launcher API, for tests.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Parser))]
#[cfg_attr(feature = "cli", command(name = "job-launcher-mock", version, about))]
pub struct Config {
    #[cfg_attr(feature = "cli", command(subcommand))]
    pub command: Option<Command>,

    /// Address to listen on.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_BIND", global = true, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST)))]
    pub bind: IpAddr,

    /// Port to listen on (Fusion's job-launcher uses 8083); 0 picks a free one.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_PORT", global = true, default_value_t = DEFAULT_PORT))]
    pub port: u16,

    /// strict refuses rule violations; lenient accepts them with recorded warnings.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_VALIDATION", value_enum, default_value_t = Validation::Strict))]
    pub validation: Validation,

    /// Most runs kept; past it the oldest ended run is evicted.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_MAX_RUNS", value_parser = at_least_one, default_value_t = DEFAULT_MAX_RUNS))]
    pub max_runs: NonZeroUsize,

    /// Most history entries kept per run; past it the oldest are dropped.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_MAX_HISTORY", value_parser = at_least_one, default_value_t = DEFAULT_MAX_HISTORY))]
    pub max_history: NonZeroUsize,

    /// Most requests the journal (`/_mock/requests`) keeps; past it the oldest are dropped.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_JOURNAL_SIZE", value_parser = at_least_one, default_value_t = DEFAULT_JOURNAL_SIZE))]
    pub journal_size: NonZeroUsize,

    /// Largest request body accepted, in bytes; also bounds a run's merged status.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_MAX_BODY_BYTES", value_parser = at_least_one, default_value_t = DEFAULT_MAX_BODY_BYTES))]
    pub max_body_bytes: NonZeroUsize,

    /// system follows the wall clock; manual moves only by POST /_mock/clock/advance.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_CLOCK", value_enum, default_value_t = ClockMode::System))]
    pub clock: ClockMode,

    /// A JSON file with an array of scenarios for simulated runs (see the README).
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_SCENARIOS"))]
    pub scenarios: Option<PathBuf>,

    /// Keep runs, histories, scenarios, configs and fault rules in this directory, across
    /// restarts; without it everything stays in memory.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_DATA_DIR", value_name = "DIR"))]
    pub data_dir: Option<PathBuf>,

    /// Require `Authorization: Basic` with these credentials on the Fusion routes
    /// (`/job-launcher/*`, `/api/*`); with --api-key too, either one is enough.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_BASIC_AUTH", hide_env_values = true, allow_hyphen_values = true, value_name = "USER:PASS", value_parser = Credentials::parse))]
    pub basic_auth: Option<Credentials>,

    /// Require this key in `x-api-key` on the Fusion routes.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_API_KEY", hide_env_values = true, allow_hyphen_values = true, value_name = "KEY", value_parser = Secret::parse))]
    pub api_key: Option<Secret>,

    /// Require `Authorization: Bearer TOKEN` on every /_mock route (the dashboard and the
    /// event stream also take `?access_token=TOKEN`).
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_ADMIN_TOKEN", hide_env_values = true, allow_hyphen_values = true, value_name = "TOKEN", value_parser = Secret::parse))]
    pub admin_token: Option<Secret>,

    /// Log line format.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty))]
    pub log_format: LogFormat,

    /// Longest a request may take before it is answered 408, so shutdown cannot hang.
    #[cfg_attr(feature = "cli", arg(
        long,
        env = "JLM_REQUEST_TIMEOUT",
        default_value_t = DEFAULT_REQUEST_TIMEOUT.into()
    ))]
    pub request_timeout: humantime::Duration,

    /// Longest a /_mock/runs/{jobId}/wait may take; a longer timeout is cut to it.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_MAX_WAIT", default_value_t = DEFAULT_MAX_WAIT.into()))]
    pub max_wait: humantime::Duration,

    /// Longest a client may take to send a whole request head (from connecting, or from
    /// the first byte of a later request on the connection); past it the connection is
    /// closed.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_HEADER_TIMEOUT", default_value_t = DEFAULT_HEADER_TIMEOUT.into()))]
    pub header_timeout: humantime::Duration,

    /// Longest a keep-alive connection may sit idle between requests before it is closed.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_IDLE_TIMEOUT", default_value_t = DEFAULT_IDLE_TIMEOUT.into()))]
    pub idle_timeout: humantime::Duration,

    /// Most connections open at once; past it new ones wait in the listen queue until
    /// one closes.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_MAX_CONNECTIONS", value_parser = at_least_one, default_value_t = DEFAULT_MAX_CONNECTIONS))]
    pub max_connections: NonZeroUsize,

    /// Longest a shutdown (SIGTERM, Ctrl-C) waits for in-flight requests before it closes
    /// what is left and exits.
    #[cfg_attr(feature = "cli", arg(
        long,
        env = "JLM_SHUTDOWN_TIMEOUT",
        default_value_t = DEFAULT_SHUTDOWN_TIMEOUT.into()
    ))]
    pub shutdown_timeout: humantime::Duration,

    /// Most sessions live at once (`POST /_mock/sessions`); 0 allows none.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_MAX_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS))]
    pub max_sessions: usize,

    /// How long a session may go unused before it is forgotten, when it names no ttl of
    /// its own; `never` keeps them until deleted.
    #[cfg_attr(feature = "cli", arg(long, env = "JLM_SESSION_TTL", default_value_t = SessionTtl::DEFAULT, value_parser = SessionTtl::parse))]
    pub session_ttl: SessionTtl,
}

/// `--session-ttl`: a duration, or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTtl(Option<Duration>);

impl SessionTtl {
    pub const DEFAULT: SessionTtl = SessionTtl(Some(Duration::from_secs(3600)));
    pub const NEVER: SessionTtl = SessionTtl(None);

    /// `never`, or a duration as the other flags take it (`30m`, `2h`).
    pub fn parse(text: &str) -> Result<SessionTtl, String> {
        if text.trim() == "never" {
            return Ok(SessionTtl::NEVER);
        }
        humantime::parse_duration(text)
            .map(|ttl| SessionTtl(Some(ttl)))
            .map_err(|e| format!("{e}; a duration such as 30m or 2h, or never"))
    }

    pub fn duration(self) -> Option<Duration> {
        self.0
    }
}

impl From<Duration> for SessionTtl {
    fn from(ttl: Duration) -> Self {
        SessionTtl(Some(ttl))
    }
}

impl std::fmt::Display for SessionTtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ttl) => write!(f, "{}", humantime::format_duration(ttl)),
            None => f.write_str("never"),
        }
    }
}

pub const DEFAULT_PORT: u16 = 8083;
pub const DEFAULT_MAX_RUNS: NonZeroUsize = nonzero(10_000);
pub const DEFAULT_MAX_HISTORY: NonZeroUsize = nonzero(1000);
pub const DEFAULT_JOURNAL_SIZE: NonZeroUsize = nonzero(1000);
pub const DEFAULT_MAX_BODY_BYTES: NonZeroUsize = nonzero(1 << 20);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(3600);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: NonZeroUsize = nonzero(10_000);
pub const DEFAULT_MAX_SESSIONS: usize = 100;
/// Inside Docker's 10 s between SIGTERM and SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A count that must be at least 1, as a flag gives it: a clear word for `0`, rather
/// than the standard library's "number would be zero for non-zero type".
#[cfg(feature = "cli")]
fn at_least_one(text: &str) -> Result<NonZeroUsize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    NonZeroUsize::new(n).ok_or_else(|| "must be at least 1".to_owned())
}

/// A non-zero constant; zero fails the build, since constants are evaluated then.
const fn nonzero(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("a limit must not be zero"),
    }
}

/// What to do instead of serving.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum Command {
    /// Exit 0 if the service on --port (of this host) answers /actuator/health with
    /// 200, else 1: a container's HEALTHCHECK, with no curl in the image.
    Healthcheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Validation {
    /// Rule violations are refused (409/422).
    Strict,
    /// Rule violations are accepted and recorded as warnings.
    Lenient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// One human-readable line per event.
    Pretty,
    /// One JSON object per event.
    Json,
}

/// A secret from the command line: never shown by `Debug`, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret as a flag gives it: not empty.
    pub fn parse(text: &str) -> Result<Secret, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(Secret(text.to_owned()))
    }

    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `USER:PASS` for HTTP basic authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

impl Credentials {
    /// `USER:PASS`, both non-empty.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(Credentials {
                user: user.to_owned(),
                password: Secret(password.to_owned()),
            }),
            _ => Err("must be USER:PASS, both non-empty".to_owned()),
        }
    }
}

impl Config {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    #[cfg(feature = "cli")]
    /// The flags of this process, from its command line and environment, as
    /// [`Parser::parse`] reads them, except that no secret is printed: `--help` shows
    /// the secrets' variables without their values (`hide_env_values`), a secret that
    /// starts with `-` is taken as the value it is (`allow_hyphen_values`) rather than
    /// quoted back as an unknown flag, and an error message, which clap writes with the
    /// offending value in it (`invalid value 'nocolon' for '--basic-auth'`), has every
    /// secret given replaced by `***`.
    pub fn parse_hiding_secrets() -> Config {
        Config::try_parse().unwrap_or_else(|error| {
            if !error.use_stderr() {
                error.exit(); // --help or --version, on stdout
            }
            let secrets = secrets_given(std::env::args_os(), std::env::vars_os());
            eprint!("{}", hide(&error.render().to_string(), &secrets));
            std::process::exit(error.exit_code());
        })
    }
}

/// The flags that take a secret, with their environment variables.
#[cfg(feature = "cli")]
const SECRET_FLAGS: [(&str, &str); 3] = [
    ("--basic-auth", "JLM_BASIC_AUTH"),
    ("--api-key", "JLM_API_KEY"),
    ("--admin-token", "JLM_ADMIN_TOKEN"),
];

/// Every secret value given on the command line (`--api-key K`, `--api-key=K`) or in
/// the environment, whether or not it is valid, and the password of each `USER:PASS`.
#[cfg(feature = "cli")]
fn secrets_given(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<String> {
    let args: Vec<String> = args
        .into_iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let mut secrets = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        for (flag, _) in SECRET_FLAGS {
            if arg == flag {
                secrets.extend(args.get(i + 1).cloned());
            } else if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                secrets.push(value.to_owned());
            }
        }
    }
    for (name, value) in vars {
        if SECRET_FLAGS.iter().any(|(_, var)| name == *var) {
            secrets.push(value.to_string_lossy().into_owned());
        }
    }
    let passwords: Vec<String> = secrets
        .iter()
        .filter_map(|s| s.split_once(':').map(|(_, password)| password.to_owned()))
        .collect();
    secrets.extend(passwords);
    secrets.retain(|s| !s.is_empty());
    // The longest first, so that a password inside its `USER:PASS` goes with it.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `text` with every occurrence of each secret replaced by `***`.
#[cfg(feature = "cli")]
fn hide(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), "***")
    })
}

impl Default for Config {
    /// The defaults of every flag, as if none were given (environment ignored).
    fn default() -> Self {
        Config {
            command: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            validation: Validation::Strict,
            max_runs: DEFAULT_MAX_RUNS,
            max_history: DEFAULT_MAX_HISTORY,
            journal_size: DEFAULT_JOURNAL_SIZE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            clock: ClockMode::System,
            scenarios: None,
            data_dir: None,
            basic_auth: None,
            api_key: None,
            admin_token: None,
            log_format: LogFormat::Pretty,
            request_timeout: DEFAULT_REQUEST_TIMEOUT.into(),
            max_wait: DEFAULT_MAX_WAIT.into(),
            header_timeout: DEFAULT_HEADER_TIMEOUT.into(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT.into(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            session_ttl: SessionTtl::DEFAULT,
        }
    }
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_real_types() {
        let config = Config::try_parse_from([
            "job-launcher-mock",
            "--bind=0.0.0.0",
            "--port=0",
            "--validation=lenient",
            "--max-runs=5",
            "--request-timeout=250ms",
        ]);
        let config = config.ok();
        assert_eq!(
            config.as_ref().map(|c| c.addr().to_string()).as_deref(),
            Some("0.0.0.0:0")
        );
        assert_eq!(
            config.as_ref().map(|c| c.validation),
            Some(Validation::Lenient)
        );
        assert_eq!(config.as_ref().map(|c| c.max_runs.get()), Some(5));
        assert_eq!(
            config.map(|c| *c.request_timeout),
            Some(Duration::from_millis(250))
        );
        assert!(Config::try_parse_from(["job-launcher-mock", "--max-runs=0"]).is_err());
        assert!(Config::try_parse_from(["job-launcher-mock", "--validation=loose"]).is_err());
    }

    #[test]
    fn secrets_are_found_however_they_are_given_and_hidden() {
        let args = [
            "job-launcher-mock",
            "--api-key",
            "-dash-key",
            "--admin-token=tok",
            "--basic-auth",
            "user:pass-word",
            "--port",
            "0",
        ]
        .map(std::ffi::OsString::from);
        let vars = [("JLM_BASIC_AUTH", "nocolon"), ("JLM_PORT", "8083")]
            .map(|(k, v)| (k.into(), v.into()));
        let secrets = secrets_given(args, vars);
        assert_eq!(
            secrets,
            ["user:pass-word", "-dash-key", "pass-word", "nocolon", "tok"]
        );
        assert_eq!(
            hide("invalid value 'nocolon'; use '-- -dash-key'", &secrets),
            "invalid value '***'; use '-- ***'"
        );
        assert_eq!(
            hide("user:pass-word and pass-word", &secrets),
            "*** and ***"
        );
    }

    #[test]
    fn peer_flags_default_and_parse_durations() {
        let defaults = Config::try_parse_from(["job-launcher-mock"]).ok();
        let defaults = defaults.map(|c| {
            (
                *c.header_timeout,
                *c.idle_timeout,
                c.max_connections.get(),
                *c.shutdown_timeout,
            )
        });
        assert_eq!(
            defaults,
            Some((
                DEFAULT_HEADER_TIMEOUT,
                DEFAULT_IDLE_TIMEOUT,
                DEFAULT_MAX_CONNECTIONS.get(),
                DEFAULT_SHUTDOWN_TIMEOUT
            ))
        );
        let config = Config::try_parse_from([
            "job-launcher-mock",
            "--header-timeout=300ms",
            "--idle-timeout=2m",
            "--max-connections=3",
            "--shutdown-timeout=1s",
        ])
        .ok();
        let given = config.map(|c| {
            (
                *c.header_timeout,
                *c.idle_timeout,
                c.max_connections.get(),
                *c.shutdown_timeout,
            )
        });
        assert_eq!(
            given,
            Some((
                Duration::from_millis(300),
                Duration::from_secs(120),
                3,
                Duration::from_secs(1)
            ))
        );
        assert!(Config::try_parse_from(["job-launcher-mock", "--max-connections=0"]).is_err());
        assert!(Config::try_parse_from(["job-launcher-mock", "--idle-timeout=soon"]).is_err());
    }
}
