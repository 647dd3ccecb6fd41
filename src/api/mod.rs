//! The HTTP surface: one module per group of routes, the shared state, and the layers
//! every request passes through.

pub mod extract;
pub mod fusion;
pub mod health;
pub mod mock;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnRequest, TraceLayer};
use tracing::{Level, Span};

use crate::config::Config;
use crate::error::render_errors;
use crate::registry::{Limits, Registry};

/// What handlers share: cheap handles, each asked for only where it is used.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub body_limit: BodyLimit,
    pub request_timeout: RequestTimeout,
}

/// `--max-body-bytes`, for the 413 message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// `--request-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

impl AppState {
    pub fn new(config: &Config) -> Self {
        AppState {
            registry: Arc::new(Registry::new(Limits {
                max_runs: config.max_runs,
                max_history: config.max_history,
                max_status_bytes: config.max_body_bytes,
                validation: config.validation,
            })),
            body_limit: BodyLimit(config.max_body_bytes.get()),
            request_timeout: RequestTimeout(*config.request_timeout),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Numbers requests 1, 2, 3... unless the client sent its own `x-request-id`. A UUID
/// would cost a system call for randomness on every request; a count is as good for
/// finding a request's log lines.
#[derive(Clone, Default)]
struct NextRequestId(Arc<AtomicU64>);

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        Some(RequestId::new(HeaderValue::from(n)))
    }
}

/// The whole service as a router: the seam tests and `serve` use.
pub fn app(state: AppState) -> Router {
    let BodyLimit(body_limit) = state.body_limit;
    let RequestTimeout(timeout) = state.request_timeout;
    Router::new()
        .merge(fusion::routes())
        .merge(mock::routes())
        .merge(health::routes())
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // A panic is a bug, but it still gets a JSON 500 rather than a dropped connection.
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(render_errors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, NextRequestId::default()))
}

fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        job_id = tracing::field::Empty,
        request_id,
    )
}

fn log_response<B>(response: &axum::http::Response<B>, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        "answered"
    );
}

/// Names the run a request is about on its log lines.
pub fn record_job_id(job_id: &str) {
    Span::current().record("job_id", job_id);
}
