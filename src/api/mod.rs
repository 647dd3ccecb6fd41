//! The HTTP surface: one module per group of routes, the shared state, and the layers
//! every request passes through.

pub mod auth;
pub mod control;
pub mod extract;
pub mod fusion;
pub mod health;
mod layers;
pub mod meta;
pub mod mock;
pub mod spark;
pub mod ui;

pub use layers::{DropConnection, JobIdNote, Journaled};

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use futures_util::future::Either;
use tokio::sync::watch;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Span;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::clock::Clock;
use crate::config::Config;
use crate::configs::Configs;
use crate::faults::Faults;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::registry::{Limits, Registry};
use crate::routes;
use crate::serve::Peers;
use crate::sim::{Scenario, Scenarios, Sim, scenario};
use crate::store::{Restored, Store, Unavailable, detached};
use crate::updates::Updates;

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

/// Lets a handler ask for one handle, e.g. `State<Arc<Registry>>`, as `#[derive(FromRef)]`
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
    registry: Arc<Registry>,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    clock: Arc<Clock>,
    configs: Arc<Configs>,
    updates: Arc<Updates>,
    sim: Arc<Sim>,
    faults: Arc<Faults>,
    access: Arc<auth::Access>,
    stopping: Stopping,
    body_limit: BodyLimit,
    request_timeout: RequestTimeout,
    max_wait: MaxWait,
    request_ids: RequestIds,
);

/// The handles of [`AppState`]: cheap, each asked for only where it is used.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub journal: Arc<Journal>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<Clock>,
    pub configs: Arc<Configs>,
    pub updates: Arc<Updates>,
    pub sim: Arc<Sim>,
    pub faults: Arc<Faults>,
    pub access: Arc<auth::Access>,
    pub stopping: Stopping,
    pub body_limit: BodyLimit,
    pub request_timeout: RequestTimeout,
    pub max_wait: MaxWait,
    pub request_ids: RequestIds,
    /// `--header-timeout`, `--idle-timeout`, `--max-connections`, `--shutdown-timeout`:
    /// read by `serve`, not by handlers.
    pub peers: Peers,
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
            Some(dir) => {
                let (store, restored) = Store::open(dir).map_err(|e| StartError(e.to_string()))?;
                Some((Arc::new(store), restored))
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
        let clock = Arc::new(Clock::new(config.clock));
        let limits = Limits {
            max_runs: config.max_runs,
            max_history: config.max_history,
            max_status_bytes: config.max_body_bytes,
            validation: config.validation,
        };
        let journal = Arc::new(Journal::new(config.journal_size));
        let stored = |e: String| StartError(format!("data directory: {e}"));
        let (registry, faults, configs, scenarios) = match persisted {
            Some((store, mut restored)) => {
                let registry = Registry::with_store(
                    limits,
                    Arc::clone(&clock),
                    Arc::clone(&store),
                    &mut restored,
                )
                .map_err(stored)?;
                let faults = Faults::with_store(Arc::clone(&store), restored.faults.as_deref())
                    .map_err(stored)?;
                let configs = Configs::persisted(Arc::clone(&store), restored.configs.as_deref())
                    .map_err(stored)?;
                let scenarios =
                    Scenarios::persisted(scenarios, store, restored.scenarios.as_deref())
                        .map_err(stored)?;
                (registry, faults, configs, scenarios)
            }
            None => (
                Registry::new(limits, Arc::clone(&clock)),
                Faults::default(),
                Configs::default(),
                Scenarios::new(scenarios),
            ),
        };
        let registry = Arc::new(registry);
        let configs = Arc::new(configs);
        let metrics = Arc::new(Metrics::new(Arc::clone(&registry), Arc::clone(&journal)));
        let updates = Arc::new(Updates::new(
            Arc::clone(&registry),
            Arc::clone(&journal),
            Arc::clone(&metrics),
            Arc::clone(&clock),
            Arc::clone(&configs),
        ));
        let sim = Arc::new(Sim::new(
            Arc::clone(&updates),
            Arc::clone(&registry),
            Arc::clone(&clock),
            Arc::clone(&configs),
            scenarios,
        ));
        // Simulated steps due by the system clock need a task to apply them; outside a
        // runtime, `serve` starts it.
        if tokio::runtime::Handle::try_current().is_ok() {
            sim.start_driver();
        }
        Ok(AppState(Arc::new(Shared {
            registry,
            journal,
            metrics,
            clock,
            configs,
            updates,
            sim,
            faults: Arc::new(faults),
            access: Arc::new(auth::Access::new(config)),
            stopping: Stopping::default(),
            body_limit: BodyLimit(config.max_body_bytes.get()),
            request_timeout: RequestTimeout(*config.request_timeout),
            max_wait: MaxWait(*config.max_wait),
            request_ids: RequestIds::default(),
            peers: Peers::of(config),
        })))
    }

    /// Forgets every run, the journal, configs, simulated runs and fault rules; the
    /// scenarios are those of the start again. The clock does not go back. With a store,
    /// all of it is written in one transaction and forgotten once that is durable.
    pub async fn reset(&self) -> Result<(), Unavailable> {
        let state = self.clone();
        detached(async move {
            let (configs_write, configs_then) = state.configs.clear_staged().await;
            let (sim_write, sim_then) = state.sim.reset_staged().await;
            let (faults_write, faults_then) = state.faults.clear_staged().await;
            let writes = [configs_write, sim_write, faults_write]
                .into_iter()
                .flatten()
                .collect();
            let journal = Arc::clone(&state.journal);
            state
                .registry
                .clear_durably(writes, move || {
                    configs_then();
                    sim_then();
                    faults_then();
                    journal.clear();
                })
                .await
        })
        .await
    }
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Numbers requests 1, 2, 3... unless the client sent its own `x-request-id`. A UUID
/// would cost a system call for randomness on every request; a count is as good for
/// finding a request's log lines.
#[derive(Clone, Default)]
pub struct RequestIds(Arc<AtomicU64>);

impl RequestIds {
    /// The request's `x-request-id`, for its log lines and its answer: the client's, or
    /// the next number. No handler reads it from the request, so it is not added there.
    pub(crate) fn of(&self, request: &Request) -> HeaderValue {
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

/// Every route with its documentation. A route is added with `routes!` on a handler
/// whose `#[utoipa::path]` names its method and path once, for the router and the
/// document alike, so no route can be served undocumented.
///
/// `timeout` bounds the routes that answer at once; waits and event streams run as
/// long as they were asked to.
fn routes(timeout: Duration) -> OpenApiRouter<AppState> {
    let prompt = OpenApiRouter::new()
        .merge(fusion::routes())
        .merge(spark::routes())
        .merge(mock::routes())
        .merge(control::routes())
        .merge(health::routes())
        .merge(meta::routes())
        .merge(ui::routes())
        .layer(prompt_timeout(timeout));
    OpenApiRouter::with_openapi(meta::document_base())
        .merge(prompt)
        .merge(mock::long_routes())
}

/// `--request-timeout`, for the routes that answer at once.
fn prompt_timeout(timeout: Duration) -> layers::PromptTimeoutLayer {
    layers::PromptTimeoutLayer(timeout)
}

/// The OpenAPI document of every route, as `/openapi.json` serves it.
pub fn openapi() -> OpenApi {
    let mut document = routes(Duration::ZERO).into_openapi();
    spark::document_app_routes(&mut document);
    document_storage_failures(&mut document);
    document
}

/// Every operation that changes what `--data-dir` keeps may answer 503
/// `storage_unavailable` when the store cannot write: documented once, here, rather than
/// on each handler. The journal is not kept, so emptying it cannot fail that way.
fn document_storage_failures(document: &mut OpenApi) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};

    let unavailable = ResponseBuilder::new()
        .description(
            "--data-dir cannot be written (a full disk, an I/O error): the change was not made",
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    for (path, item) in document.paths.paths.iter_mut() {
        let changes = [&mut item.put, &mut item.post, &mut item.delete];
        for operation in changes.into_iter().flatten() {
            if path == routes::JOURNAL {
                continue;
            }
            operation
                .responses
                .responses
                .entry("503".to_owned())
                .or_insert_with(|| unavailable.clone().into());
        }
    }
}

/// The operations of a documented path: the methods the mock routes.
fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

/// The whole service as a router: the seam tests use.
pub fn app(state: AppState) -> Router {
    let stack = service(state);
    Router::new().fallback_service(stack)
}

/// A tower service that answers every request, as `serve` can run it on any worker.
pub(crate) trait Answers:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Answers for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The whole service as one tower service: what [`app`] routes every request to, and
/// what `serve` calls directly, without a router around it.
pub(crate) fn service(state: AppState) -> impl Answers {
    let BodyLimit(body_limit) = state.body_limit;
    let RequestTimeout(timeout) = state.request_timeout;
    let (router, _) = routes(timeout)
        .route_layer(layers::AroundLayer(layers::TimeRequests(Arc::clone(
            &state.metrics,
        ))))
        .split_for_parts();
    let router = router.with_state(state.clone());
    let post_status = ServiceBuilder::new()
        .layer(layers::AroundLayer(layers::TimeStatusPosts::new(
            Arc::clone(&state.metrics),
        )))
        .layer(prompt_timeout(timeout))
        .service(fusion::post_status_service(state.clone()));
    // Only the router's extractors read the limit from the request; a status update's
    // body is read within it by `JsonBody`.
    let dispatch = Dispatch {
        post_status,
        router: DefaultBodyLimit::max(body_limit).layer(router),
    };
    // The layers wrap the router once, as a whole. `Router::layer` would wrap each route
    // (and each method of it) in its own boxed copy of the stack, and every request
    // clones the nest of boxes it goes through, layer by layer: profiling put that at a
    // quarter of a POST's instructions.
    // Request ids, the request's span and its debug lines are kept by `surround`
    // itself: as layers of their own they cost each request several allocations.
    ServiceBuilder::new()
        .layer(layers::AroundLayer(layers::Surround(state)))
        // A panic is a bug, but it still gets a JSON 500 rather than a dropped connection.
        .layer(CatchPanicLayer::new())
        .service(dispatch)
}

/// Sends a status update, most of what a client sends, straight to its handler (with
/// the same timeout and timing as the router's routes), and every other request through
/// the router. The router finds a route by looking its path up, and runs a request
/// through a boxed copy of each route layer: profiling put that at a tenth of a status
/// update's instructions.
#[derive(Clone)]
struct Dispatch<P, R> {
    post_status: P,
    router: R,
}

impl<P, R> Service<Request> for Dispatch<P, R>
where
    P: Service<Request, Response = Response, Error = Infallible>,
    R: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<P::Future, R::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        ready!(self.post_status.poll_ready(cx))?;
        self.router.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::POST && request.uri().path() == routes::STATUS {
            Either::Left(self.post_status.call(request))
        } else {
            Either::Right(self.router.call(request))
        }
    }
}

/// The span of a request's log lines.
pub(crate) fn request_span(request: &Request, request_id: &HeaderValue) -> Span {
    // At debug, so that a busy mock spends nothing on lines nobody reads; refusals are
    // logged at info with their own method and path.
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        job_id = tracing::field::Empty,
        request_id = request_id.to_str().unwrap_or(""),
    )
}

/// A request's last debug line.
pub(crate) fn log_response<B>(response: &axum::http::Response<B>, latency: Duration) {
    tracing::debug!(
        status = response.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        "answered"
    );
}

/// Names the run a request is about on its log lines.
pub fn record_job_id(job_id: &str) {
    Span::current().record("job_id", job_id);
}
