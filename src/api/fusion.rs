//! The routes Fusion's job-launcher documents.
//!
//! - `POST /job-launcher/launcher/status`: a driver reports a run's status
//! - `GET  /job-launcher/launcher/status`: every run's current status, a JSON array
//! - `POST /job-launcher/launcher`: launch a simulated run of a job config

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, Scope};
use super::layers::{JobIdNote, Journaled, record_job_id};
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::model::JobState;
use crate::registry::{Accepted, Creates};
use crate::routes;
use crate::updates::{Source, Submitted};

/// The routes, `POST` on the status path included: requests for it never reach the
/// router (the api sends them straight to `post_status`), but the router still
/// documents it and lists it in a 405's `Allow`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_status, list_statuses))
        .routes(routes!(launch))
}

/// Fusion's JobStatus, as far as the mock reads it. Every other field is kept as sent.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: bodies are read by `StatusUpdate::parse`
pub struct JobStatus {
    state: JobState,
    /// The run's id: 1 to 128 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|\\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.[A-Za-z0-9._-]+)$"
    )]
    job_id: String,
    job_config: Option<JobConfigRef>,
    hostname: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    result: Option<BTreeMap<String, serde_json::Value>>,
    /// RFC 3339 (the pattern keeps to days every month has).
    #[schema(format = DateTime, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[Tt](2[0-3]|[01][0-9]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-](2[0-3]|[01][0-9]):[0-5][0-9])$")]
    start_time: Option<String>,
    #[schema(format = DateTime, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[Tt](2[0-3]|[01][0-9]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-](2[0-3]|[01][0-9]):[0-5][0-9])$")]
    end_time: Option<String>,
    /// Milliseconds, `endTime - startTime`.
    #[schema(minimum = 0)]
    duration: Option<u64>,
}

/// A run's current status as the mock answers it: every update merged, each value as
/// posted (fields beyond these included).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: statuses are written from the raw updates
pub struct RunStatus {
    state: JobState,
    job_id: String,
    #[schema(value_type = Option<Object>)]
    job_config: Option<serde_json::Value>,
    hostname: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    result: Option<serde_json::Value>,
    #[schema(format = DateTime)]
    start_time: Option<String>,
    #[schema(format = DateTime)]
    end_time: Option<String>,
    #[schema(minimum = 0)]
    duration: Option<u64>,
}

/// A job config as `PUT /api/spark/configurations/{id}` takes it: its `id` is the
/// path's (given in the body too, it must be the same).
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: configs are kept as posted
pub struct JobConfigPut {
    /// e.g. `aggregation`, `sql_template`, `custom_python_job`.
    #[schema(rename = "type", min_length = 1)]
    job_type: String,
}

/// The `jobConfig` of a status: `id`, when given, a non-empty string; any other fields.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only
pub struct JobConfigRef {
    #[schema(min_length = 1)]
    id: Option<String>,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    job_type: Option<serde_json::Value>,
}

/// A job config as Fusion takes it: an `id`, a `type`, and type-specific fields.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: configs are kept as posted
pub struct JobConfig {
    /// A letter, then letters, digits, `_` and `-`; at most 63 characters.
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9_-]{0,62}$")]
    id: String,
    /// e.g. `aggregation`, `sql_template`, `custom_python_job`.
    #[schema(rename = "type", min_length = 1)]
    job_type: String,
}

/// Update a job: applies one status update to its run.
///
/// Answers 200 with where the update went in the run's history (Fusion documents only
/// "200 OK"; the body is the mock's).
#[utoipa::path(
    post,
    path = routes::STATUS,
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
pub(crate) async fn post_status(world: Scope, body: Result<JsonBody, ApiError>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(refusal) => {
            world.updates.count_refusal(&refusal);
            return refusal.into_response();
        }
    };
    let problems = body.media_type_problem().into_iter().collect();
    let Submitted {
        job_id,
        outcome,
        journal_seq,
    } = world
        .updates
        .submit(&body.bytes, problems, Source::Request, Creates::Yes)
        .await;
    if let Some(job_id) = &job_id {
        record_job_id(job_id);
    }
    let mut response = match outcome {
        Ok(accepted) => {
            if !accepted.warnings.is_empty() && tracing::enabled!(tracing::Level::DEBUG) {
                let warnings = serde_json::to_string(&accepted.warnings).unwrap_or_default();
                tracing::debug!(%warnings, "accepted with warnings");
            }
            accepted_answer(&accepted)
        }
        Err(refusal) => refusal.into_response(),
    };
    // Journaled already, `jobId` included: unlike other routes, this one needs no
    // `JobIdNote` for the journal.
    response.extensions_mut().insert(Journaled(journal_seq));
    response
}

/// The 200 answer to an accepted update: what `Json` answers, in fewer allocations.
/// `Json` writes into a 128-byte buffer, which an answer with a warning outgrows, and
/// then shares it unless it is exactly full, which allocates again; this writes into a
/// buffer that fits such an answer and hands it over as a boxed slice, shrunk to fit.
fn accepted_answer(accepted: &Accepted) -> Response {
    let mut body = Vec::with_capacity(256);
    match serde_json::to_writer(&mut body, accepted) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            Bytes::from(body.into_boxed_slice()),
        )
            .into_response(),
        // Not reached (an answer's only keys are strings): `Json` answers the error as it
        // would on any route.
        Err(_) => Json(accepted).into_response(),
    }
}

/// List all job statuses: the current status of every run, in the order they first
/// appeared. The array has no room for it, so `X-Mock-Evicted` says how many runs
/// `--max-runs` has evicted. It is a poll of every run in it.
#[utoipa::path(
    get,
    path = routes::STATUS,
    tag = "fusion",
    responses(
        (status = 200, description = "Every run's current status", body = Vec<RunStatus>,
            headers(("X-Mock-Evicted" = u64, description = "Runs evicted by --max-runs so far"))),
    )
)]
async fn list_statuses(world: Scope) -> ([(&'static str, String); 1], Json<Vec<Box<RawValue>>>) {
    world.sim.poll_all().await;
    let evicted = world.registry.evicted();
    (
        [(EVICTED_HEADER, evicted.to_string())],
        Json(world.registry.statuses()),
    )
}

const EVICTED_HEADER: &str = "x-mock-evicted";

/// Launch a job: starts a simulated run of the posted config, which then goes through
/// its scenario's steps. Answers the run's JobStatus, `starting`.
#[utoipa::path(
    post,
    path = routes::LAUNCH,
    tag = "fusion",
    request_body(content = JobConfig, content_type = "application/json"),
    responses(
        (status = 200, description = "The new run", content_type = "application/hal+json", body = RunStatus),
        (status = 400, description = "The body is not one JSON object", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "The config's id or type is missing or malformed, or a step of its scenario would be due after 9999-12-31T23:59:59.999Z, the latest time the mock can hold (a manual clock advanced near it)", body = ErrorBody),
        (status = 507, description = "The registry is full of runs that have not ended", body = ErrorBody),
    )
)]
async fn launch(world: Scope, body: JsonBody) -> Result<Response, ApiError> {
    let (job_id, status) = world
        .sim
        .launch_posted(&body.bytes, body.media_type_problem())
        .await?;
    record_job_id(&job_id);
    let mut response = Json(status).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/hal+json"),
    );
    response.extensions_mut().insert(JobIdNote(job_id));
    Ok(response)
}
