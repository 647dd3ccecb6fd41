//! The HTTP surface: one module per group of routes, the extractors, and the layers every
//! request passes through; here, the router of them all, and its OpenAPI document.
//!
//! - `fusion`: Fusion's job-launcher routes; `spark`: the Spark jobs API
//! - `mock`: runs, histories, waits, the journal, events, reset (`/_mock`)
//! - `control`: scenarios, the clock, fault rules (`/_mock`)
//! - `health`, `metrics`, `ui` (the dashboard), and `GET /openapi.json` here
//!
//! Handlers get the world they act on through `extract::Scope` and change it only
//! through its parts' methods: the api never locks a run.

pub mod auth;
pub mod control;
mod document;
pub mod extract;
pub mod fusion;
pub mod health;
mod layers;
pub mod metrics;
pub mod mock;
pub mod sessions;
pub mod spark;
pub mod ui;

pub use layers::DropConnection;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::Access;
use crate::app::{AppState, BodyLimit, RequestTimeout};
use crate::routes;

/// Every route with its documentation. A route is added with `routes!` on a handler
/// whose `#[utoipa::path]` names its method and path once, for the router and the
/// document alike, so no route can be served undocumented.
///
/// `timeout` bounds the routes that answer at once; waits and event streams run as
/// long as they were asked to.
fn router(timeout: Duration) -> OpenApiRouter<AppState> {
    let prompt = OpenApiRouter::new()
        .merge(fusion::routes())
        .merge(spark::routes())
        .merge(mock::routes())
        .merge(control::routes())
        .merge(sessions::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(ui::routes())
        .routes(routes!(get_openapi))
        .layer(prompt_timeout(timeout));
    OpenApiRouter::with_openapi(document::base())
        .merge(prompt)
        .merge(mock::long_routes())
}

/// `--request-timeout`, for the routes that answer at once.
fn prompt_timeout(timeout: Duration) -> layers::PromptTimeoutLayer {
    layers::PromptTimeoutLayer(timeout)
}

/// The OpenAPI document of every route, as `/openapi.json` serves it.
pub fn openapi() -> OpenApi {
    let mut document = router(Duration::ZERO).into_openapi();
    spark::document_app_routes(&mut document);
    document::storage_failures(&mut document);
    document
}

/// The document of a process started without access flags, written once: then it depends
/// on nothing but the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document::written(&openapi()));

/// This document: every route, its parameters, bodies and answers, and the credentials
/// each route needs as this process was started (`--basic-auth`, `--api-key`,
/// `--admin-token`).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
async fn get_openapi(State(access): State<Arc<Access>>) -> impl IntoResponse {
    let document = if access.guards_anything() {
        // Seldom asked for, and only of a guarded process: written each time.
        let mut document = openapi();
        auth::document(&access, &mut document);
        Cow::Owned(document::written(&document))
    } else {
        Cow::Borrowed(DOCUMENT.as_str())
    };
    ([(header::CONTENT_TYPE, "application/json")], document)
}

/// The whole service as a router, as `MockServerBuilder::into_router` hands it out.
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
    let (router, _) = router(timeout)
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
        .service(fusion::post_status.with_state(state.clone()));
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
