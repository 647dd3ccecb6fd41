//! The middleware. Every request passes through [`Surround`], one layer for the mock's
//! own concerns: its request id and log lines, access control, injected faults, the
//! error body of a refusal, and its journal entry. Around the routes: each route's
//! latency ([`TimeRequests`]) and `--request-timeout` ([`PromptTimeoutLayer`]).

use std::borrow::Cow;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Sleep;
use tower::{Layer, Service, ServiceExt};
use tracing::{Instrument, Span};

use super::auth;
use super::extract::{self, InSession, read_body};
use crate::app::{AppState, REQUEST_ID, RequestTimeout};
use crate::configs;
use crate::error::{self, ApiError, ErrorCode, ErrorReport};
use crate::faults::{self, Action};
use crate::journal::Record;
use crate::metrics::Metrics;
use crate::model::StatusUpdate;
use crate::routes::{self, Surface};
use crate::world::World;

/// Names the run a request was about on its answer, for the journal.
#[derive(Debug, Clone)]
pub struct JobIdNote(pub Arc<str>);

/// On an answer: its request is already in the journal, as entry `seq` (a status
/// update, journaled before anyone could hear of it).
#[derive(Debug, Clone, Copy)]
pub struct Journaled(pub u64);

/// The fault rule that hit a request, on its answer, for the journal.
#[derive(Debug, Clone, Copy)]
pub struct FaultNote(pub u64);

/// On an answer: close the connection instead of sending it (a `drop` fault).
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// Names the run a request is about on its log lines.
pub fn record_job_id(job_id: &str) {
    Span::current().record("job_id", job_id);
}

/// The span of a request's log lines.
fn request_span(request: &Request, request_id: &HeaderValue) -> Span {
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
fn log_response<B>(response: &axum::http::Response<B>, latency: Duration) {
    tracing::debug!(
        status = response.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        "answered"
    );
}

/// The service a layer wraps: the rest of the stack, which always answers.
pub trait Inner: Service<Request, Response: IntoResponse, Error = Infallible> {}

impl<S> Inner for S
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
}

/// The rest of the stack, for a layer's function to run a request through once.
pub struct Next<S>(S);

impl<S: Inner> Next<S> {
    /// The answer of the rest of the stack. Not an `async fn`: that would keep the
    /// service and the request twice in its future, once as arguments and once in the
    /// call it awaits.
    fn run(self, request: Request) -> impl Future<Output = Response> {
        self.0.oneshot(request).map(|answer| match answer {
            Ok(response) => response.into_response(),
            Err(never) => match never {},
        })
    }
}

/// What a layer does around the rest of the stack, as an async function of the request.
pub trait Around: Clone + Send + Sync + 'static {
    fn around<S>(self, request: Request, next: Next<S>) -> impl Future<Output = Response> + Send
    where
        S: Inner + Send + 'static,
        S::Future: Send;
}

/// A tower layer made of an [`Around`]. Like axum's `from_fn`, except that `from_fn`
/// boxes the rest of the stack and clones the box on every request; here the rest of the
/// stack is cloned as it is (a few reference counts), and a request costs one boxed
/// future.
#[derive(Clone)]
pub struct AroundLayer<T>(pub T);

impl<T: Clone, S> Layer<S> for AroundLayer<T> {
    type Service = WithAround<T, S>;

    fn layer(&self, inner: S) -> WithAround<T, S> {
        WithAround {
            around: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct WithAround<T, S> {
    around: T,
    inner: S,
}

impl<T, S> Service<Request> for WithAround<T, S>
where
    T: Around,
    S: Inner + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The rest of the stack is readied per request, by `Next::run`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let around = self.around.clone();
        let next = Next(self.inner.clone());
        Box::pin(around.around(request, next).map(Ok))
    }
}

/// The mock's own middleware, as one layer: see [`surround`].
#[derive(Clone)]
pub struct Surround(pub AppState);

impl Around for Surround {
    fn around<S>(self, request: Request, next: Next<S>) -> impl Future<Output = Response> + Send
    where
        S: Inner + Send + 'static,
        S::Future: Send,
    {
        surround(self.0, request, next)
    }
}

/// All the mock does around a request, outermost first: journal it (the Fusion surface
/// only), write the body of an error answer, check access, inject faults (the Fusion
/// surface only), and, with `--data-dir`, hold the answer until what it changed is on
/// disk. One layer rather than five: each layer is a boxed future and a clone of
/// everything inside it, on every request. It also gives the request its
/// `x-request-id` and the span of its log lines.
///
/// Every request's future is moved into an allocation of its own, so it is kept small:
/// the functions on the way are not `async fn`s where a combinator does (see
/// [`Next::run`]), and the branches a request seldom takes are boxed.
fn surround<S: Inner>(
    state: AppState,
    request: Request,
    next: Next<S>,
) -> impl Future<Output = Response> {
    let started = Instant::now();
    let request_id = state.request_ids.of(&request);
    let span = request_span(&request, &request_id);
    let answer = answer(state, request, next).instrument(span.clone());
    answer.map(move |mut response| {
        span.in_scope(|| log_response(&response, started.elapsed()));
        if !response.headers().contains_key(REQUEST_ID) {
            response.headers_mut().insert(REQUEST_ID, request_id);
        }
        response
    })
}

/// [`surround`] within the request's span.
async fn answer<S: Inner>(state: AppState, mut request: Request, next: Next<S>) -> Response {
    tracing::debug!("started processing request");
    // Under `/sessions/{id}`, the rest of the path is routed in the session's world.
    let entered = extract::enter_session(&mut request);
    let session = match &entered {
        None => None,
        Some((id, original)) => match state.sessions.find(id) {
            Some(session) => {
                request
                    .extensions_mut()
                    .insert(InSession(Arc::clone(&session)));
                Some(session)
            }
            None => {
                // Without the credentials the route needs, a client is told that first,
                // as at the root, so that it cannot tell which sessions exist.
                let surface = Surface::of(request.uri().path());
                let refused = auth::refusal(&state.access, surface, &request);
                let method = request.method().clone();
                return Box::pin(unknown_session(&state, refused, method, id, original)).await;
            }
        },
    };
    let world = session.as_ref().map_or_else(|| state.world(), |s| &s.world);
    let surface = Surface::of(request.uri().path());
    let own = surface.is_own();
    let journal = (!own).then(|| Pending::of(world, &request));
    let method = request.method().clone();
    let path = RequestPath::of(&request, own);
    // An error's body names the path as it came; the journal, the route's.
    let shown = entered.as_ref().map(|(_, original)| &**original);
    // A future is as large as its largest state: fault rules and error bodies, seldom
    // needed, are boxed.
    let response = match auth::refusal(&state.access, surface, &request) {
        Some(refusal) => refusal,
        None if own || world.faults.is_empty() => next.run(request).await,
        None => Box::pin(inject_faults(&state, world, request, next)).await,
    };
    let response = if error::is_refusal(&response) {
        Box::pin(error::render(
            &world.clock,
            &method,
            shown.unwrap_or(path.as_str()),
            response,
        ))
        .await
    } else {
        response
    };
    if let Some(journal) = journal {
        journal.record(world, path.as_str(), &response);
    }
    response
}

/// The answer to a request under `/sessions/{id}` for a session there is not.
/// `refused`: the route's refusal of a client without its credentials, which comes first.
async fn unknown_session(
    state: &AppState,
    refused: Option<Response>,
    method: Method,
    id: &str,
    path: &str,
) -> Response {
    let refusal = refused.unwrap_or_else(|| {
        ApiError::NotFound(format!(
            "no session {id}: it was deleted or expired, or never made (POST /_mock/sessions)"
        ))
        .into_response()
    });
    error::render(&state.world().clock, &method, path, refusal).await
}

/// A request's path, kept until its answer for the journal and an error's body.
///
/// A request to the Fusion surface keeps its `Uri` (a reference count, no copy). The
/// mock's own routes copy the path: a `Uri` shares the buffer hyper read the request
/// head into, and a wait, which may last an hour, would hold that buffer (8 KB) the
/// whole time, beside the one hyper allocates for the connection's next reads.
enum RequestPath {
    Shared(axum::http::Uri),
    Copied(Box<str>),
}

impl RequestPath {
    fn of(request: &Request, own: bool) -> RequestPath {
        if own {
            RequestPath::Copied(request.uri().path().into())
        } else {
            RequestPath::Shared(request.uri().clone())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            RequestPath::Shared(uri) => uri.path(),
            RequestPath::Copied(path) => path,
        }
    }
}

/// A request to the Fusion surface, before its answer: what its journal entry needs
/// besides the path. The path is copied only if the entry is written here: a status
/// update, the busiest route, is journaled by its handler.
struct Pending {
    time: chrono::DateTime<chrono::Utc>,
    method: Cow<'static, str>,
}

impl Pending {
    fn of(world: &World, request: &Request) -> Self {
        let method = match *request.method() {
            Method::GET => Cow::Borrowed("GET"),
            Method::POST => Cow::Borrowed("POST"),
            Method::PUT => Cow::Borrowed("PUT"),
            Method::DELETE => Cow::Borrowed("DELETE"),
            ref other => Cow::Owned(other.to_string()),
        };
        Pending {
            time: world.clock.now(),
            method,
        }
    }

    /// Journals the request with its answer's status and error code, unless the update
    /// path has already journaled it.
    fn record(self, world: &World, path: &str, response: &Response) {
        let extensions = response.extensions();
        let fault = extensions.get::<FaultNote>().map(|note| note.0);
        if let Some(Journaled(seq)) = extensions.get::<Journaled>() {
            if let Some(rule) = fault {
                world.journal.mark_fault(*seq, rule);
            }
            return;
        }
        let dropped = extensions.get::<DropConnection>().is_some();
        let code = match fault {
            Some(_) => Some(ErrorCode::InjectedFault),
            None => extensions.get::<ErrorReport>().map(|report| report.code),
        };
        world.journal.record(Record {
            time: self.time,
            method: self.method,
            path: Cow::Owned(path.to_owned()),
            job_id: extensions
                .get::<JobIdNote>()
                .map(|note| Arc::clone(&note.0)),
            status: (!dropped).then(|| response.status().as_u16()),
            code,
            warnings: Vec::new(),
            simulated: false,
            fault,
        });
    }
}

/// Applies the first fault rule that hits a request to the Fusion surface, or runs it.
async fn inject_faults<S: Inner>(
    state: &AppState,
    world: &World,
    request: Request,
    next: Next<S>,
) -> Response {
    let path = request.uri().path().to_owned();
    let now = world.clock.now();
    let method = request.method().clone();
    let mut ids = Ids::from_path(&path);
    let mut request = request;
    let has_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
    if has_body && world.faults.needs_ids(method.as_str(), &path, now) {
        let (parts, body) = request.into_parts();
        let bytes = match read_body(body, state.body_limit.0).await {
            Ok(bytes) => bytes,
            Err(refusal) => return refusal.into_response(),
        };
        ids.read_body(&bytes, &path);
        request = Request::from_parts(parts, Body::from(bytes));
    }
    let seen = faults::Request {
        method: method.as_str(),
        path: &path,
        job_id: ids.job_id.as_deref(),
        job_config_id: ids.job_config_id.as_deref(),
    };
    let Some(hit) = world.faults.check(&seen, now) else {
        return next.run(request).await;
    };
    tracing::info!(rule = hit.rule, action = ?hit.action, "injected fault");
    let mut response = match hit.action {
        Action::Status {
            status,
            retry_after,
        } => ApiError::InjectedFault {
            rule: hit.rule,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            retry_after,
        }
        .into_response(),
        Action::Delay(delay) => {
            // The delay is the request's own time, so `--request-timeout` bounds it as
            // it bounds any request: one that would outlast the timeout ends there,
            // unserved, with the timeout's 408.
            let RequestTimeout(timeout) = state.request_timeout;
            tokio::select! {
                () = tokio::time::sleep(delay.min(timeout)) => {}
                () = state.stopping.stopped() => {}
            }
            if delay < timeout {
                next.run(request).await
            } else {
                StatusCode::REQUEST_TIMEOUT.into_response()
            }
        }
        Action::Drop => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            response.extensions_mut().insert(DropConnection);
            response
        }
    };
    let extensions = response.extensions_mut();
    extensions.insert(FaultNote(hit.rule));
    if let (None, Some(job_id)) = (extensions.get::<JobIdNote>(), ids.job_id) {
        extensions.insert(JobIdNote(Arc::from(job_id)));
    }
    response
}

/// The ids a fault rule may match on.
#[derive(Debug, Default)]
struct Ids {
    job_id: Option<String>,
    job_config_id: Option<String>,
}

impl Ids {
    /// The config id a Spark route's path names.
    fn from_path(path: &str) -> Ids {
        Ids {
            job_id: None,
            job_config_id: routes::spark_config_id(path).map(str::to_owned),
        }
    }

    /// The ids in a body, read as its route reads them (a byte order mark, a name
    /// written twice): a launched config's `id`; on any other route, a status update's
    /// `jobId` and `jobConfig.id`.
    fn read_body(&mut self, bytes: &[u8], path: &str) {
        if path == routes::LAUNCH {
            let id = || configs::launched_id(bytes);
            self.job_config_id = self.job_config_id.take().or_else(id);
            return;
        }
        let Ok((update, _)) = StatusUpdate::parse(bytes) else {
            return;
        };
        self.job_id = update.named_job_id().map(Cow::into_owned);
        let config_id = || update.facts.config_id().map(str::to_owned);
        self.job_config_id = self.job_config_id.take().or_else(config_id);
    }
}

/// Route middleware: observes each request's latency under its route's path template.
#[derive(Clone)]
pub struct TimeRequests(pub Arc<Metrics>);

impl Around for TimeRequests {
    fn around<S>(self, request: Request, next: Next<S>) -> impl Future<Output = Response> + Send
    where
        S: Inner + Send + 'static,
        S::Future: Send,
    {
        // A clone of the matched path shares its text.
        let route = request.extensions().get::<MatchedPath>().cloned();
        // Any method can be sent to a route; only the standard ones get series of their own.
        let method = match *request.method() {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::PATCH => "PATCH",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        timed(request, next, move |seconds| {
            if let Some(route) = route {
                self.0.observe(route.as_str(), method, seconds);
            }
        })
    }
}

/// Runs a request, timed from now until its answer, and tells `observe` the seconds it
/// took. Not an `async fn`, for the reason given at [`Next::run`].
fn timed<S: Inner>(
    request: Request,
    next: Next<S>,
    observe: impl FnOnce(f64),
) -> impl Future<Output = Response> {
    let started = Instant::now();
    next.run(request).map(move |response| {
        observe(started.elapsed().as_secs_f64());
        response
    })
}

/// [`TimeRequests`] for the one route `api::Dispatch` sends past the router: its
/// series, `POST` on the status path, is found once rather than on every request.
#[derive(Clone)]
pub struct TimeStatusPosts {
    metrics: Arc<Metrics>,
    series: Arc<OnceLock<Histogram>>,
}

impl TimeStatusPosts {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        TimeStatusPosts {
            metrics,
            // Made at the first request, as the router's series are: a series nobody
            // used stays out of `/metrics`.
            series: Arc::default(),
        }
    }
}

impl Around for TimeStatusPosts {
    fn around<S>(self, request: Request, next: Next<S>) -> impl Future<Output = Response> + Send
    where
        S: Inner + Send + 'static,
        S::Future: Send,
    {
        timed(request, next, move |seconds| {
            let series = self
                .series
                .get_or_init(|| self.metrics.latency_of(routes::STATUS, "POST"));
            series.observe(seconds);
        })
    }
}

/// `--request-timeout`, for the routes that answer at once: past it a request gets a
/// 408. Nearly every such request is answered the first time it is polled, so the timer
/// is armed only when it first has to wait (for a slow body, say), and counts from then.
/// A timer armed and cancelled on every request cost about 1% of a status update's time.
#[derive(Clone, Copy)]
pub struct PromptTimeoutLayer(pub Duration);

impl<S> Layer<S> for PromptTimeoutLayer {
    type Service = PromptTimeout<S>;

    fn layer(&self, inner: S) -> PromptTimeout<S> {
        PromptTimeout {
            inner,
            timeout: self.0,
        }
    }
}

#[derive(Clone)]
pub struct PromptTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<Request> for PromptTimeout<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Prompt<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Prompt {
            answer: self.inner.call(request),
            timeout: self.timeout,
            timer: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a [`PromptTimeout`] service.
    pub struct Prompt<F> {
        #[pin]
        answer: F,
        timeout: Duration,
        // Boxed: most requests never need it, and every request's future is moved.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F> Future for Prompt<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(answer) = this.answer.poll(cx) {
            return Poll::Ready(answer);
        }
        let timeout = *this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Ok(StatusCode::REQUEST_TIMEOUT.into_response()))
    }
}
