//! The composition root: the service's state, built from its [`Config`] in one place.
//!
//! [`AppState`] holds the world (runs, journal, configs, scenarios and simulated runs,
//! faults, the clock: see `world`) apart from what is the process's: the store of
//! `--data-dir`, metrics, access control, the limits on requests and peers, shutdown,
//! request ids. Everything is wired here, in the order each part needs the others;
//! nothing else builds any of it. The api and `serve` only receive it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{FromRef, Request};
use axum::http::{HeaderName, HeaderValue};
use tokio::sync::watch;

use crate::access::Access;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::LiveSources;
use crate::metrics::Metrics;
use crate::registry::Limits;
use crate::sessions::{Sessions, Settings as SessionSettings};
use crate::sim::{Scenario, scenario};
use crate::store::{Restored, Store, Unavailable};
use crate::world::{Blueprint, World};

/// What handlers share, behind one reference count: a request passes it through several
/// layers, each holding a clone, and one count to update (on a cache line both workers
/// write) costs less than one per handle.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles of [`AppState`]: cheap, each asked for only where it is used.
pub struct Shared {
    /// The service's own world and the sessions' (the api's `Scope` hands a request's
    /// to its handler).
    pub sessions: Arc<Sessions>,
    /// `--data-dir`, whose health the probes and metrics report.
    pub store: Option<Arc<Store>>,
    pub metrics: Arc<Metrics>,
    pub access: Arc<Access>,
    pub stopping: Stopping,
    pub body_limit: BodyLimit,
    pub request_timeout: RequestTimeout,
    pub max_wait: MaxWait,
    pub request_ids: RequestIds,
    /// `--header-timeout`, `--idle-timeout`, `--max-connections`, `--shutdown-timeout`:
    /// read by `serve`, not by handlers.
    pub peers: Peers,
}

/// Lets a handler ask for one handle, e.g. `State<Arc<Metrics>>`, as `#[derive(FromRef)]`
/// would on the handles themselves.
macro_rules! handles {
    ($($field:ident: $handle:ty),* $(,)?) => {
        $(impl FromRef<AppState> for $handle {
            fn from_ref(state: &AppState) -> $handle {
                state.$field.clone()
            }
        })*
    };
}

handles!(
    store: Option<Arc<Store>>,
    metrics: Arc<Metrics>,
    access: Arc<Access>,
    stopping: Stopping,
    body_limit: BodyLimit,
    request_timeout: RequestTimeout,
    max_wait: MaxWait,
    request_ids: RequestIds,
);

/// A service that cannot start as configured, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl AppState {
    /// The state of a service configured by `config`: with the scenarios of
    /// `--scenarios`, and what `--data-dir` holds.
    pub fn new(config: &Config) -> Result<Self, StartError> {
        let scenarios = match &config.scenarios {
            Some(path) => scenario::load_file(path).map_err(StartError)?,
            None => Vec::new(),
        };
        let persisted = match &config.data_dir {
            #[cfg(feature = "persistence")]
            Some(dir) => {
                let (store, restored) = Store::open(dir).map_err(|e| StartError(e.to_string()))?;
                Some((Arc::new(store), restored))
            }
            #[cfg(not(feature = "persistence"))]
            Some(dir) => {
                return Err(StartError(format!(
                    "--data-dir {}: this build has no persistence (the crate's `persistence` \
                     feature)",
                    dir.display()
                )));
            }
            None => None,
        };
        AppState::build(config, scenarios, persisted)
    }

    /// The state of a service configured by `config` (its `--scenarios` and
    /// `--data-dir` aside), in memory, with these scenarios.
    pub fn with_scenarios(config: &Config, scenarios: Vec<Scenario>) -> Self {
        match AppState::build(config, scenarios, None) {
            Ok(state) => state,
            // Without a store, nothing is read that could fail.
            Err(never) => unreachable!("{never}"),
        }
    }

    fn build(
        config: &Config,
        scenarios: Vec<Scenario>,
        persisted: Option<(Arc<Store>, Restored)>,
    ) -> Result<Self, StartError> {
        let store = persisted.as_ref().map(|(store, _)| Arc::clone(store));
        // Every world counts with the metrics, which read every world at each scrape.
        let metrics = Arc::new(Metrics::new(store.clone()));
        let blueprint = Blueprint {
            limits: Limits {
                max_runs: config.max_runs,
                max_history: config.max_history,
                max_status_bytes: config.max_body_bytes,
                validation: config.validation,
            },
            journal_size: config.journal_size,
            scenarios,
            metrics: Arc::clone(&metrics),
        };
        let stored = |e: String| StartError(format!("data directory: {e}"));
        // The service's own world, and the sessions': as `--data-dir` kept them, or new.
        let clock = Arc::new(Clock::new(config.clock));
        let (root, kept_sessions) = match persisted {
            Some((store, mut restored)) => {
                let sessions = std::mem::take(&mut restored.sessions);
                let root = World::build(
                    &blueprint,
                    Arc::clone(&clock),
                    Some((Arc::clone(&store), restored)),
                )
                .map_err(stored)?;
                (root, Some((store, sessions)))
            }
            None => (
                World::build(&blueprint, Arc::clone(&clock), None).map_err(stored)?,
                None,
            ),
        };
        let settings = SessionSettings {
            max: config.max_sessions,
            ttl: config.session_ttl.duration(),
            clock: config.clock,
        };
        let sessions = Arc::new(
            Sessions::new(Arc::new(root), blueprint, settings, clock, kept_sessions)
                .map_err(stored)?,
        );
        metrics.read_from(Arc::clone(&sessions) as Arc<dyn LiveSources>);
        // Expired sessions need a task to forget them; outside a runtime, `serve` starts it.
        if tokio::runtime::Handle::try_current().is_ok() {
            sessions.start_sweeper();
        }
        Ok(AppState(Arc::new(Shared {
            sessions,
            store,
            metrics,
            access: Arc::new(Access::new(config)),
            stopping: Stopping::default(),
            body_limit: BodyLimit(config.max_body_bytes.get()),
            request_timeout: RequestTimeout(*config.request_timeout),
            max_wait: MaxWait(*config.max_wait),
            request_ids: RequestIds::default(),
            peers: Peers::of(config),
        })))
    }

    /// The service's own world: the root paths'.
    pub fn world(&self) -> &Arc<World> {
        self.sessions.root()
    }

    /// Forgets every run, the journal, configs, simulated runs and fault rules, as
    /// `POST /_mock/reset` does (see [`World::reset`]).
    pub async fn reset(&self) -> Result<(), Unavailable> {
        self.world().reset().await
    }
}

/// Set when the server begins to shut down, so that long-lived answers (waits, event
/// streams) end instead of holding the drain open.
#[derive(Clone, Default)]
pub struct Stopping(Arc<watch::Sender<bool>>);

impl Stopping {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once [`Stopping::stop`] has been called.
    pub async fn stopped(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

/// `--max-body-bytes`, for the 413 message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// `--max-wait`: the longest a wait may take.
#[derive(Debug, Clone, Copy)]
pub struct MaxWait(pub Duration);

/// `--request-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

/// How long peers may take and how many may be connected: `--header-timeout`,
/// `--idle-timeout`, `--max-connections` and `--shutdown-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Peers {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: std::num::NonZeroUsize,
    pub shutdown_timeout: Duration,
}

impl Peers {
    pub fn of(config: &Config) -> Peers {
        Peers {
            header_timeout: *config.header_timeout,
            idle_timeout: *config.idle_timeout,
            max_connections: config.max_connections,
            shutdown_timeout: *config.shutdown_timeout,
        }
    }
}

/// The header that names a request in its log lines and on its answer.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Numbers requests 1, 2, 3... unless the client sent its own `x-request-id`. A UUID
/// would cost a system call for randomness on every request; a count is as good for
/// finding a request's log lines.
#[derive(Clone, Default)]
pub struct RequestIds(Arc<AtomicU64>);

impl RequestIds {
    /// The request's `x-request-id`, for its log lines and its answer: the client's, or
    /// the next number. No handler reads it from the request, so it is not added there.
    pub fn of(&self, request: &Request) -> HeaderValue {
        match request.headers().get(&REQUEST_ID) {
            // Copied rather than cloned: a clone shares the buffer hyper read the request
            // head into, which a long wait would then hold.
            Some(id) => HeaderValue::from_bytes(id.as_bytes()).unwrap_or_else(|_| id.clone()),
            None => {
                // Not `HeaderValue::from(u64)`: that writes into a growable buffer and then
                // shares it, two allocations; a copy of the exact digits is one.
                let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
                HeaderValue::from_str(itoa::Buffer::new().format(n))
                    .unwrap_or_else(|_| HeaderValue::from(n))
            }
        }
    }
}
