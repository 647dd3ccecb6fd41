//! The mock's own routes, for tests to inspect and reset what clients did.
//!
//! - `GET    /_mock/runs`: runs with bookkeeping; filters `state`, `type`, `jobConfigId`;
//!   paging `limit`, `offset`
//! - `DELETE /_mock/runs`: forget every run
//! - `GET    /_mock/runs/{jobId}`: one run
//! - `DELETE /_mock/runs/{jobId}`: forget one run
//! - `GET    /_mock/runs/{jobId}/history`: its updates, oldest first

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::Query;
use super::{AppState, record_job_id};
use crate::error::ApiError;
use crate::model::{JobState, Violation};
use crate::registry::{HistoryView, Registry, RunFilter, RunList, RunView};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_mock/runs", get(list_runs).delete(delete_runs))
        .route("/_mock/runs/{job_id}", get(get_run).delete(delete_run))
        .route("/_mock/runs/{job_id}/history", get(get_history))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRunsQuery {
    /// A comma-separated list of states.
    state: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    job_config_id: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn list_runs(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<ListRunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    // An empty parameter (`?state=`) filters nothing, as if it were not given.
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let states = given(query.state)
        .as_deref()
        .map(parse_states)
        .transpose()?;
    let filter = RunFilter {
        states,
        job_type: given(query.job_type),
        job_config_id: given(query.job_config_id),
    };
    Ok(Json(registry.list(
        &filter,
        query.offset.unwrap_or(0),
        query.limit,
    )))
}

fn parse_states(list: &str) -> Result<Vec<JobState>, ApiError> {
    let names = list.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (states, unknown): (Vec<_>, Vec<_>) = names
        .map(|name| JobState::from_name(name).ok_or(name))
        .partition(Result::is_ok);
    if unknown.is_empty() {
        return Ok(states.into_iter().flatten().collect());
    }
    let violations = unknown
        .into_iter()
        .filter_map(Result::err)
        .map(|name| Violation {
            field: "state".to_owned(),
            message: format!("\"{name}\" is not a state; use {}", JobState::NAMES),
        })
        .collect();
    Err(ApiError::BadRequest {
        message: format!("the state filter must list states from {}", JobState::NAMES),
        violations,
    })
}

async fn delete_runs(State(registry): State<Arc<Registry>>) -> StatusCode {
    registry.clear();
    StatusCode::NO_CONTENT
}

async fn get_run(
    State(registry): State<Arc<Registry>>,
    Path(job_id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    record_job_id(&job_id);
    registry
        .run(&job_id)
        .map(Json)
        .ok_or_else(|| unknown_run(&job_id))
}

async fn delete_run(
    State(registry): State<Arc<Registry>>,
    Path(job_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    record_job_id(&job_id);
    if registry.remove(&job_id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_run(&job_id))
    }
}

async fn get_history(
    State(registry): State<Arc<Registry>>,
    Path(job_id): Path<String>,
) -> Result<Json<HistoryView>, ApiError> {
    record_job_id(&job_id);
    registry
        .history(&job_id)
        .map(Json)
        .ok_or_else(|| unknown_run(&job_id))
}

fn unknown_run(job_id: &str) -> ApiError {
    ApiError::NotFound(format!("no run with jobId {job_id}"))
}
