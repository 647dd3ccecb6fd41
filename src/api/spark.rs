//! The Spark jobs API of Fusion's Job REST Server, on the same registry, under `/api`
//! and `/api/apps/{app}` alike (the app is not checked: the mock has one registry).
//!
//! Each handler's path is documented without its prefix, which the nesting adds.
//!
//! - `PUT    /api/spark/configurations/{id}`: create or replace a job config
//! - `GET    /api/spark/configurations[/{id}]`: all configs, or one
//! - `DELETE /api/spark/configurations/{id}`: forget a config
//! - `POST   /api/spark/jobs/{id}`: start a simulated run of config `{id}`
//! - `GET    /api/spark/jobs[/{id}]`: the latest run of every config, or of one (a poll)
//! - `DELETE /api/spark/jobs/{id}`: cancel the config's latest run

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::document::operations_mut;
use super::extract::{JsonBody, Scope};
use super::fusion::{JobConfig, JobConfigPut, RunStatus};
use super::layers::{JobIdNote, record_job_id};
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::routes;

/// The Spark routes under `/api`, and again under `/api/apps/{app}`.
pub fn routes() -> OpenApiRouter<AppState> {
    routes::SPARK_PREFIXES
        .iter()
        .fold(OpenApiRouter::new(), |router, prefix| {
            router.nest(prefix, spark_routes())
        })
}

/// Documents the routes nested under `/api/apps/{app}` as operations of their own: a
/// distinct `operationId`, and the `app` parameter their path has.
pub fn document_app_routes(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Required, schema::Type};

    let app = ParameterBuilder::new()
        .name("app")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The Fusion app; the mock has one registry for all"))
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
        ))
        .build();
    for (path, item) in document.paths.paths.iter_mut() {
        if !path.starts_with(routes::SPARK_APP) {
            continue;
        }
        for operation in operations_mut(item) {
            if let Some(id) = &mut operation.operation_id {
                id.push_str("_in_app");
            }
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.insert(0, app.clone().into());
        }
    }
}

fn spark_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_configs))
        .routes(routes!(get_config, put_config, delete_config))
        .routes(routes!(list_jobs))
        .routes(routes!(start_job, get_job, cancel_job))
}

/// The `{id}` of a route, whatever else its path captures (`{app}`).
#[derive(Debug, Deserialize)]
struct IdPath {
    id: String,
}

/// Every job config, in the order they became known (registered, launched or reported).
#[utoipa::path(get, path = "/spark/configurations", tag = "spark",
    responses((status = 200, description = "Every config", body = Vec<JobConfig>)))]
async fn list_configs(world: Scope) -> Json<Vec<Box<RawValue>>> {
    Json(world.configs.list())
}

/// One job config.
#[utoipa::path(get, path = "/spark/configurations/{id}", tag = "spark",
    params(("id" = String, Path, description = "The config's id", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The config", body = JobConfig),
        (status = 404, description = "No such config", body = ErrorBody),
    ))]
async fn get_config(
    world: Scope,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    world
        .configs
        .get(&id)
        .map(|config| Json(config.to_raw_value()))
        .ok_or_else(|| unknown_config(&id))
}

/// Creates or replaces a job config. Its `id`, when the body has one, must be the path's.
#[utoipa::path(put, path = "/spark/configurations/{id}", tag = "spark",
    params(("id" = String, Path, description = "The config's id", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,62}$")),
    request_body(content = JobConfigPut, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = JobConfig),
        (status = 201, description = "Created", body = JobConfig),
        (status = 400, description = "The body is not one JSON object", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "The id or type is missing or malformed", body = ErrorBody),
    ))]
async fn put_config(
    world: Scope,
    Path(IdPath { id }): Path<IdPath>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let (created, config) = world
        .configs
        .put(&id, &body.bytes, body.media_type_problem())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(config)).into_response())
}

/// Forgets a job config (its runs stay).
#[utoipa::path(delete, path = "/spark/configurations/{id}", tag = "spark",
    params(("id" = String, Path, description = "The config's id", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,62}$")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 404, description = "No such config", body = ErrorBody),
    ))]
async fn delete_config(
    world: Scope,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<StatusCode, ApiError> {
    if world.configs.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_config(&id))
    }
}

/// The latest run of every config that has run: a poll of each.
#[utoipa::path(get, path = "/spark/jobs", tag = "spark",
    responses((status = 200, description = "The latest run of every config", body = Vec<RunStatus>)))]
async fn list_jobs(world: Scope) -> Json<Vec<Box<RawValue>>> {
    let latest = world.registry.latest_runs();
    world
        .sim
        .poll(latest.iter().map(|(_, job_id)| job_id.as_ref()))
        .await;
    Json(
        latest
            .iter()
            .filter_map(|(_, job_id)| world.registry.status(job_id))
            .collect(),
    )
}

/// Starts a simulated run of a known config; no body is needed.
#[utoipa::path(post, path = "/spark/jobs/{id}", tag = "spark",
    params(("id" = String, Path, description = "The config's id", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The new run, starting", body = RunStatus),
        (status = 404, description = "No such config", body = ErrorBody),
        (status = 422, description = "A step of the config's scenario would be due after 9999-12-31T23:59:59.999Z, the latest time the mock can hold (a manual clock advanced near it)", body = ErrorBody),
        (status = 507, description = "The registry is full of runs that have not ended", body = ErrorBody),
    ))]
async fn start_job(world: Scope, Path(IdPath { id }): Path<IdPath>) -> Result<Response, ApiError> {
    let (job_id, status) = world
        .sim
        .launch_known(&id)
        .await
        .ok_or_else(|| unknown_config(&id))??;
    Ok(with_job_id(job_id, Json(status)))
}

/// The latest run of a config: a poll of it.
#[utoipa::path(get, path = "/spark/jobs/{id}", tag = "spark",
    params(("id" = String, Path, description = "The config's id", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The config's latest run", body = RunStatus),
        (status = 404, description = "The config never ran", body = ErrorBody),
    ))]
async fn get_job(world: Scope, Path(IdPath { id }): Path<IdPath>) -> Result<Response, ApiError> {
    let job_id = world
        .registry
        .latest_run_of(&id)
        .ok_or_else(|| never_ran(&id))?;
    world.sim.poll([job_id.as_ref()]).await;
    let status = world
        .registry
        .status(&job_id)
        .ok_or_else(|| never_ran(&id))?;
    Ok(with_job_id(job_id, Json(status)))
}

/// Cancels a config's latest run: `cancelling`, then `cancelled` 100 ms of the clock later.
#[utoipa::path(delete, path = "/spark/jobs/{id}", tag = "spark",
    params(("id" = String, Path, description = "The config's id", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The run, cancelling", body = RunStatus),
        (status = 404, description = "The config never ran", body = ErrorBody),
        (status = 409, description = "The run has ended", body = ErrorBody),
    ))]
async fn cancel_job(world: Scope, Path(IdPath { id }): Path<IdPath>) -> Result<Response, ApiError> {
    let job_id = world
        .registry
        .latest_run_of(&id)
        .ok_or_else(|| never_ran(&id))?;
    let status = world
        .sim
        .cancel(&job_id)
        .await
        .ok_or_else(|| never_ran(&id))??;
    Ok(with_job_id(job_id, Json(status)))
}

fn with_job_id(job_id: Arc<str>, answer: impl IntoResponse) -> Response {
    record_job_id(&job_id);
    let mut response = answer.into_response();
    response.extensions_mut().insert(JobIdNote(job_id));
    response
}

fn unknown_config(id: &str) -> ApiError {
    ApiError::NotFound(format!("no job config with id {id}"))
}

fn never_ran(id: &str) -> ApiError {
    ApiError::NotFound(format!("job config {id} has no run"))
}
