//! The routes Fusion's job-launcher documents.
//!
//! - `POST /job-launcher/launcher/status`: a driver reports a run's status
//! - `GET  /job-launcher/launcher/status`: every run's current status, a JSON array

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::value::RawValue;

use super::extract::JsonBody;
use super::{AppState, record_job_id};
use crate::error::ApiError;
use crate::model::StatusUpdate;
use crate::registry::{Accepted, Registry};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/job-launcher/launcher/status",
        get(list_statuses).post(post_status),
    )
}

/// Applies one status update; answers 200 with where it went in the run's history.
async fn post_status(
    State(registry): State<Arc<Registry>>,
    body: JsonBody,
) -> Result<Json<Accepted>, ApiError> {
    let (update, mut problems) = StatusUpdate::parse(&body.bytes)
        .map_err(|malformed| ApiError::MalformedJson(malformed.0))?;
    problems.extend(body.media_type_problem());
    // Without a well-formed jobId there is no run to check the update against.
    let Some(job_id) = update.job_id.clone() else {
        return Err(ApiError::refusal(problems));
    };
    record_job_id(&job_id);
    let accepted = registry.apply(job_id, update, problems)?;
    if !accepted.warnings.is_empty() {
        let warnings = serde_json::to_string(&accepted.warnings).unwrap_or_default();
        tracing::info!(%warnings, "accepted with warnings");
    }
    Ok(Json(accepted))
}

/// Fusion's "List all job statuses": the current status of every run. The array has no
/// room for it, so `X-Mock-Evicted` says how many runs `--max-runs` has evicted.
async fn list_statuses(
    State(registry): State<Arc<Registry>>,
) -> ([(&'static str, String); 1], Json<Vec<Box<RawValue>>>) {
    let evicted = registry.evicted();
    (
        [(EVICTED_HEADER, evicted.to_string())],
        Json(registry.statuses()),
    )
}

const EVICTED_HEADER: &str = "x-mock-evicted";
