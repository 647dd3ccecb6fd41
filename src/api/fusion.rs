//! The routes Fusion's job-launcher documents.
//!
//! - `POST /job-launcher/launcher/status`: a driver reports a run's status
//! - `GET  /job-launcher/launcher/status`: every run's current status, a JSON array

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::JsonBody;
use super::{AppState, JobIdNote, WarningsNote, record_job_id};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::Metrics;
use crate::model::{JobState, StatusUpdate};
use crate::registry::{Accepted, Registry};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_status, list_statuses))
}

/// Fusion's JobStatus, as far as the mock reads it. Every other field is kept as sent.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: bodies are read by `StatusUpdate::parse`
pub struct JobStatus {
    state: JobState,
    /// The run's id: 1 to 128 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._-]+$")]
    job_id: String,
    #[schema(value_type = Option<Object>)]
    job_config: Option<BTreeMap<String, serde_json::Value>>,
    hostname: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    result: Option<BTreeMap<String, serde_json::Value>>,
    #[schema(format = DateTime)]
    start_time: Option<String>,
    #[schema(format = DateTime)]
    end_time: Option<String>,
    /// Milliseconds, `endTime - startTime`.
    #[schema(minimum = 0)]
    duration: Option<u64>,
}

/// Update a job: applies one status update to its run.
///
/// Answers 200 with where the update went in the run's history (Fusion documents only
/// "200 OK"; the body is the mock's).
#[utoipa::path(
    post,
    path = "/job-launcher/launcher/status",
    tag = "fusion",
    request_body(content = JobStatus, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted (or an exact repeat of the run's last update)", body = Accepted),
        (status = 400, description = "The body is not one JSON object", body = ErrorBody),
        (status = 409, description = "The transition table or the run's identity forbids it", body = ErrorBody),
        (status = 413, description = "The body, or the run's merged status, is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or malformed, or the times do not add up", body = ErrorBody),
        (status = 507, description = "The registry is full of runs that have not ended", body = ErrorBody),
    )
)]
async fn post_status(
    State(registry): State<Arc<Registry>>,
    State(metrics): State<Arc<Metrics>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let mut job_id = None;
    let outcome = body.and_then(|body| update_status(&registry, &body, &mut job_id));
    let mut response = match outcome {
        Ok(accepted) => {
            metrics.update_accepted();
            let warnings = WarningsNote(accepted.warnings.clone());
            (Extension(warnings), Json(accepted)).into_response()
        }
        Err(refusal) => {
            metrics.update_refused(refusal.code());
            refusal.into_response()
        }
    };
    if let Some(job_id) = job_id {
        response.extensions_mut().insert(JobIdNote(job_id));
    }
    response
}

fn update_status(
    registry: &Registry,
    body: &JsonBody,
    job_id_seen: &mut Option<Arc<str>>,
) -> Result<Accepted, ApiError> {
    let (update, mut problems) = StatusUpdate::parse(&body.bytes)
        .map_err(|malformed| ApiError::MalformedJson(malformed.0))?;
    problems.extend(body.media_type_problem());
    // Without a well-formed jobId there is no run to check the update against.
    let Some(job_id) = update.job_id.clone() else {
        return Err(ApiError::refusal(problems));
    };
    record_job_id(&job_id);
    *job_id_seen = Some(Arc::clone(&job_id));
    let accepted = registry.apply(job_id, update, problems)?;
    if !accepted.warnings.is_empty() {
        let warnings = serde_json::to_string(&accepted.warnings).unwrap_or_default();
        tracing::info!(%warnings, "accepted with warnings");
    }
    Ok(accepted)
}

/// List all job statuses: the current status of every run, in the order they first
/// appeared. The array has no room for it, so `X-Mock-Evicted` says how many runs
/// `--max-runs` has evicted.
#[utoipa::path(
    get,
    path = "/job-launcher/launcher/status",
    tag = "fusion",
    responses(
        (status = 200, description = "Every run's current status", body = Vec<JobStatus>,
            headers(("X-Mock-Evicted" = u64, description = "Runs evicted by --max-runs so far"))),
    )
)]
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
