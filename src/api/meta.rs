//! The routes about the service itself.
//!
//! - `GET /metrics`: Prometheus metrics, OpenMetrics text
//! - `GET /openapi.json`: the OpenAPI document of every route

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{self, Access};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::{self, Metrics};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_metrics))
        .routes(routes!(get_openapi))
}

/// What the document says beyond its routes: the title, the version, the tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "job-launcher-mock",
        description = "A stand-in for Lucidworks Fusion's job-launcher API, for tests. \
            Fusion's own routes are tagged `fusion`; everything under `/_mock` is the \
            mock's, for tests to inspect and control it.",
    ),
    tags(
        (name = "fusion", description = "The routes Fusion's job-launcher documents"),
        (name = "mock", description = "The mock's own routes, for tests"),
        (name = "service", description = "Health, metrics and this document"),
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The start of the document; the routes add their paths and schemas to it.
pub fn document_base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses(
        (status = 200, description = "Every metric", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 500, description = "The metrics could not be written", body = ErrorBody),
    )
)]
async fn get_metrics(State(metrics): State<Arc<Metrics>>) -> Result<impl IntoResponse, ApiError> {
    let text = metrics
        .render()
        .map_err(|_| ApiError::Internal("the metrics could not be written".to_owned()))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text))
}

/// The document of a process started without access flags, written once: then it depends
/// on nothing but the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| written(&super::openapi()));

fn written(document: &utoipa::openapi::OpenApi) -> String {
    document
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"the document could not be written: {e}\"}}"))
}

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
        let mut document = super::openapi();
        auth::document(&access, &mut document);
        Cow::Owned(written(&document))
    } else {
        Cow::Borrowed(DOCUMENT.as_str())
    };
    ([(header::CONTENT_TYPE, "application/json")], document)
}
