//! [`MockServer`]: the mock in a Rust test's own process, on a free port, and the typed
//! views and error its methods give.

#[macro_use]
mod methods;
mod convert;
mod error;
mod session;
#[cfg(test)]
mod tests;
mod views;

pub use error::Error;
pub use session::MockSession;
pub use views::{History, HistoryEntry, Journal, JournalEntry, Run, Warning};

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use chrono::{DateTime, Utc};

use convert::{to_value, typed, unreadable};

use crate::app::AppState;
use crate::config::{ClockMode, Config, Credentials, Secret, SessionTtl, Validation};
use crate::journal::JournalFilter;
use crate::model::JobState;
use crate::registry::{RunFilter, Until};
use crate::serve::serve;
use crate::sessions::{Sessions, Wanted};
use crate::sim::Scenario;
use crate::verify::Expectations;
use crate::world::World;

/// A job-launcher-mock serving on `127.0.0.1` and a free port, in this process, until
/// it is dropped.
///
/// Each server has a registry, journal and metrics of its own, so tests running in
/// parallel never see each other's runs. What a test reads through it (`runs`,
/// `history`, `wait_for_state`) comes straight from the registry, without HTTP.
///
/// ```
/// use std::time::Duration;
/// use job_launcher_mock::{JobState, MockServer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = MockServer::start().await; // a free port, strict validation
/// let url = format!("{}/job-launcher/launcher/status", server.uri());
///
/// // The code under test reports a run's status...
/// let client = reqwest::Client::new();
/// for state in ["running", "finished"] {
///     let update = serde_json::json!({"jobId": "hhzitrwancwv", "state": state});
///     client.post(&url).json(&update).send().await?.error_for_status()?;
/// }
///
/// // ...and the test waits for exactly what it expects, then looks at what was sent.
/// let run = server
///     .wait_for_state("hhzitrwancwv", JobState::Finished, Duration::from_secs(5))
///     .await?;
/// assert_eq!(run.state, JobState::Finished);
/// assert_eq!(run.update_count, 2);
/// let history = server.history("hhzitrwancwv").await.expect("the run exists");
/// assert_eq!(history.updates[0].update["state"], "running");
/// assert!(history.updates[0].seq < history.updates[1].seq);
/// assert_eq!(server.runs().await.len(), 1);
///
/// server.reset().await;
/// assert!(server.runs().await.is_empty());
/// drop(server); // stops serving
/// # Ok(())
/// # }
/// ```
pub struct MockServer {
    address: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    /// Becomes `true` once the server has stopped serving.
    done: watch::Receiver<bool>,
}

/// Settings for a [`MockServer`], each the equivalent of one of the binary's flags;
/// [`MockServer::builder`] makes one with every flag's default, except that the server
/// listens on `127.0.0.1` and a free port.
#[derive(Debug, Clone)]
pub struct MockServerBuilder {
    config: Config,
    scenarios: Vec<Scenario>,
}

impl MockServer {
    /// Starts a server with the defaults: a free port, strict validation, the default
    /// bounds.
    ///
    /// # Panics
    ///
    /// When no port on `127.0.0.1` can be bound: a test cannot go on without its mock.
    pub async fn start() -> MockServer {
        MockServer::builder().start().await
    }

    pub fn builder() -> MockServerBuilder {
        MockServerBuilder {
            config: Config {
                bind: Ipv4Addr::LOCALHOST.into(),
                port: 0,
                ..Config::default()
            },
            scenarios: Vec::new(),
        }
    }

    /// The base URI, e.g. `http://127.0.0.1:41234`, to which Fusion's paths are added.
    pub fn uri(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    world_methods!();

    /// Makes a session on this server, as `POST /_mock/sessions` with no body does: a
    /// world of its own (runs, journal, configs, scenarios, faults, clock) under
    /// `{uri}/sessions/{id}`, with the builder's session ttl and clock. Dropping the
    /// handle deletes the session.
    ///
    /// # Errors
    ///
    /// `sessions_full` (507) when `max_sessions` are live.
    pub async fn session(&self) -> Result<MockSession, Error> {
        self.session_with(&Value::Null).await
    }

    /// Makes a session as `POST /_mock/sessions` does with `options` as its body:
    /// `{"name", "ttl", "clock"}`, every member optional (`{"clock": "manual"}` for a
    /// clock of its own that moves only when advanced).
    ///
    /// # Errors
    ///
    /// What the route would answer: a member that cannot be read (422), a name in use
    /// (409), `max_sessions` live (507).
    pub async fn session_with(&self, options: &Value) -> Result<MockSession, Error> {
        let wanted = Wanted::read(options)?;
        let session = self.sessions().create(wanted).await?;
        Ok(MockSession::new(
            &self.uri(),
            session,
            Arc::clone(&self.state.sessions),
        ))
    }

    /// A future that resolves once the server has stopped serving (after it is dropped,
    /// or [`MockServer::shutdown`]): its port is closed and its connections are done.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.done.clone();
        async move {
            // An error means the serving task is gone: stopped all the same.
            let _ = done.wait_for(|done| *done).await;
        }
    }

    /// Stops serving and waits until it has: the listener is closed, open connections
    /// have had their in-flight request answered (or been closed at the shutdown
    /// timeout, 5 s), waits and event streams have ended.
    pub async fn shutdown(self) {
        let stopped = self.stopped();
        drop(self);
        stopped.await;
    }

    /// The world the methods of `world_methods!` read and change, and only that: the
    /// root's. A [`MockSession`] offers the same methods over its own.
    fn world(&self) -> &Arc<World> {
        self.state.world()
    }

    fn sessions(&self) -> &Sessions {
        &self.state.sessions
    }
}

impl Drop for MockServer {
    /// Stops serving: the listener closes, idle connections close at once and the others
    /// once their in-flight request is answered; waits and event streams end at once.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the server already stopped.
            let _ = stop.send(());
        }
        self.state.stopping.stop();
    }
}

impl MockServerBuilder {
    /// `--validation lenient`: accept rule violations (a forbidden transition, a
    /// timing rule) with recorded warnings instead of refusing them.
    pub fn lenient(mut self) -> Self {
        self.config.validation = Validation::Lenient;
        self
    }

    /// `--validation strict`, the default: refuse rule violations with 409 or 422.
    pub fn strict(mut self) -> Self {
        self.config.validation = Validation::Strict;
        self
    }

    /// `--clock manual`: simulated runs move, and reported time passes, only by
    /// [`MockServer::advance`] (or `POST /_mock/clock/advance`).
    pub fn manual_clock(mut self) -> Self {
        self.config.clock = ClockMode::Manual;
        self
    }

    /// A scenario (`{"match", "steps", "progression"}`) for simulated runs, as if it were
    /// in the `--scenarios` file; a reset keeps it. A later scenario with the same
    /// `match` replaces an earlier one, as in the file.
    ///
    /// # Panics
    ///
    /// When the scenario could not run: the message names each problem.
    pub fn scenario(mut self, scenario: Value) -> Self {
        match Scenario::parse(&scenario, None) {
            Ok(scenario) => {
                match self
                    .scenarios
                    .iter_mut()
                    .find(|s| s.pattern == scenario.pattern)
                {
                    Some(earlier) => *earlier = scenario,
                    None => self.scenarios.push(scenario),
                }
            }
            Err(problems) => panic!("this scenario cannot run: {problems:?}"),
        }
        self
    }

    /// `--max-runs`: the most runs kept; past it the oldest ended run is evicted.
    pub fn max_runs(mut self, max_runs: NonZeroUsize) -> Self {
        self.config.max_runs = max_runs;
        self
    }

    /// `--max-history`: the most history entries kept per run.
    pub fn max_history(mut self, max_history: NonZeroUsize) -> Self {
        self.config.max_history = max_history;
        self
    }

    /// `--journal-size`: the most requests the journal keeps.
    pub fn journal_size(mut self, journal_size: NonZeroUsize) -> Self {
        self.config.journal_size = journal_size;
        self
    }

    /// `--max-body-bytes`: the largest request body accepted, which also bounds a run's
    /// merged status.
    pub fn max_body_bytes(mut self, max_body_bytes: NonZeroUsize) -> Self {
        self.config.max_body_bytes = max_body_bytes;
        self
    }

    /// `--basic-auth USER:PASS`: the Fusion routes require these credentials (or, with
    /// [`api_key`](Self::api_key) too, the key).
    ///
    /// # Panics
    ///
    /// When `user` or `password` is empty, or `user` holds a `:`, as the flag refuses.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        match Credentials::parse(&format!("{user}:{password}")) {
            Ok(credentials) if credentials.user == user => {
                self.config.basic_auth = Some(credentials);
            }
            _ => panic!(
                "basic_auth: the user must be non-empty without a ':', the password non-empty"
            ),
        }
        self
    }

    /// `--api-key KEY`: the Fusion routes require this key in `x-api-key` (or, with
    /// [`basic_auth`](Self::basic_auth) too, the credentials).
    ///
    /// # Panics
    ///
    /// When `key` is empty, as the flag refuses.
    pub fn api_key(mut self, key: &str) -> Self {
        self.config.api_key = Some(secret("api_key", key));
        self
    }

    /// `--admin-token TOKEN`: every `/_mock` route requires `Authorization: Bearer
    /// TOKEN` (the dashboard and the event stream also take `?access_token=TOKEN`).
    ///
    /// # Panics
    ///
    /// When `token` is empty, as the flag refuses.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.config.admin_token = Some(secret("admin_token", token));
        self
    }

    /// `--request-timeout`: the longest a request may take before it is answered 408
    /// (waits and event streams aside); 30 s unless set.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout.into();
        self
    }

    /// `--max-wait`: the longest a wait (`/_mock/runs/{jobId}/wait`) may take; a longer
    /// `timeout` is cut to it. 1 h unless set.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = max_wait.into();
        self
    }

    /// `--header-timeout`: the longest a client may take to send a whole request head
    /// before its connection is closed; 10 s unless set. Served connections only.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.config.header_timeout = timeout.into();
        self
    }

    /// `--idle-timeout`: the longest a kept-alive connection may sit idle between
    /// requests before it is closed; 60 s unless set. Served connections only.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// `--max-connections`: the most connections open at once; past it new ones wait
    /// in the listen queue until one closes. Served connections only.
    pub fn max_connections(mut self, max_connections: NonZeroUsize) -> Self {
        self.config.max_connections = max_connections;
        self
    }

    /// `--shutdown-timeout`: the longest [`MockServer::shutdown`] (or a drop) lets
    /// in-flight requests run before it closes their connections; 5 s unless set.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout.into();
        self
    }

    /// `--max-sessions`: the most sessions (`POST /_mock/sessions`) live at once; 0
    /// allows none. 100 unless set.
    pub fn max_sessions(mut self, max_sessions: usize) -> Self {
        self.config.max_sessions = max_sessions;
        self
    }

    /// `--session-ttl`: how long a session may go unused, by the mock's clock, before it
    /// is forgotten, when it names no ttl of its own; `None` is `never`. 1 h unless set.
    pub fn session_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.config.session_ttl = ttl.map_or(SessionTtl::NEVER, SessionTtl::from);
        self
    }

    /// The whole service as an axum [`Router`](axum::Router), serving nothing by itself:
    /// for tests that send requests in-process with tower's `ServiceExt::oneshot`, no
    /// socket, or to nest the mock into an app of one's own. Its state (runs, journal,
    /// scenarios, faults, clock) is its own, shared by its clones.
    ///
    /// The connection settings ([`header_timeout`](Self::header_timeout),
    /// [`idle_timeout`](Self::idle_timeout), [`max_connections`](Self::max_connections),
    /// [`shutdown_timeout`](Self::shutdown_timeout)) are the server's, so they do not
    /// apply here. Call it within a Tokio runtime: simulated runs on the system clock
    /// move by a task it starts there.
    ///
    /// ```
    /// use axum::body::Body;
    /// use axum::http::Request;
    /// use job_launcher_mock::MockServer;
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let router = MockServer::builder().lenient().into_router();
    /// let request = Request::get("/actuator/health").body(Body::empty()).unwrap();
    /// let answer = router.oneshot(request).await.unwrap();
    /// assert_eq!(answer.status(), 200);
    /// # }
    /// ```
    pub fn into_router(self) -> axum::Router {
        crate::api::app(AppState::with_scenarios(&self.config, self.scenarios))
    }

    /// Starts the server on its own task of the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// When no port on `127.0.0.1` can be bound: a test cannot go on without its mock.
    pub async fn start(self) -> MockServer {
        let listener = match TcpListener::bind(self.config.addr()).await {
            Ok(listener) => listener,
            Err(e) => panic!(
                "job-launcher-mock cannot listen on {}: {e}",
                self.config.addr()
            ),
        };
        let address = match listener.local_addr() {
            Ok(address) => address,
            Err(e) => panic!("job-launcher-mock cannot read its own address: {e}"),
        };
        let state = AppState::with_scenarios(&self.config, self.scenarios);
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // Resolves when the server is dropped (the sender with it).
            let _ = stopped.await;
        };
        let (finished, done) = watch::channel(false);
        let served = serve(listener, state.clone(), shutdown);
        tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::error!(error = %e, "job-launcher-mock stopped serving");
            }
            finished.send_replace(true);
        });
        MockServer {
            address,
            state,
            stop: Some(stop),
            done,
        }
    }
}

/// A secret a builder method was given, refused as its flag refuses it.
fn secret(method: &str, text: &str) -> Secret {
    match Secret::parse(text) {
        Ok(secret) => secret,
        Err(reason) => panic!("{method}: {reason}"),
    }
}
