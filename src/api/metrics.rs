//! The service's metrics.
//!
//! - `GET /metrics`: Prometheus metrics, OpenMetrics text

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::metrics::{self, Metrics};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_metrics))
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
