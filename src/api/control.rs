//! The mock's controls for simulated jobs: scenarios, the clock, injected faults.
//!
//! - `GET    /_mock/scenarios`: every scenario, in the order they are tried
//! - `GET|PUT|DELETE /_mock/scenarios/{match}`: one scenario
//! - `GET    /_mock/clock`, `POST /_mock/clock/advance`: the clock
//! - `GET|POST|DELETE /_mock/faults`, `DELETE /_mock/faults/{id}`: fault rules

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, Scope};
use crate::app::AppState;
use crate::clock::{Clock, ClockMode};
use crate::error::{ApiError, ErrorBody};
use crate::faults::RuleView;
use crate::model::JobState;
use crate::model::Violation;
use crate::model::time::rfc3339;
use crate::sim::{Progression, ScenarioView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_scenarios))
        .routes(routes!(get_scenario, put_scenario, delete_scenario))
        .routes(routes!(get_clock))
        .routes(routes!(advance_clock))
        .routes(routes!(list_faults, add_fault, delete_faults))
        .routes(routes!(delete_fault))
}

#[derive(Debug, Deserialize)]
struct MatchPath {
    #[serde(rename = "match")]
    pattern: String,
}

/// Every scenario, in the order they are tried (an exact id beats a wildcard).
#[utoipa::path(get, path = "/_mock/scenarios", tag = "mock",
    responses((status = 200, description = "Every scenario", body = Vec<ScenarioView>)))]
async fn list_scenarios(world: Scope) -> Json<Vec<ScenarioView>> {
    Json(world.sim.scenarios().list())
}

/// One scenario.
#[utoipa::path(get, path = "/_mock/scenarios/{match}", tag = "mock",
    params(("match" = String, Path, description = "The scenario's match: a config id, `*` a wildcard")),
    responses(
        (status = 200, description = "The scenario", body = ScenarioView),
        (status = 404, description = "No such scenario", body = ErrorBody),
    ))]
async fn get_scenario(
    world: Scope,
    Path(MatchPath { pattern }): Path<MatchPath>,
) -> Result<Json<ScenarioView>, ApiError> {
    world
        .sim
        .scenarios()
        .get(&pattern)
        .map(Json)
        .ok_or_else(|| unknown_scenario(&pattern))
}

/// Adds or replaces a scenario. One that could not run is refused here, never at run
/// time.
#[utoipa::path(put, path = "/_mock/scenarios/{match}", tag = "mock",
    params(("match" = String, Path, description = "The scenario's match: a config id, `*` a wildcard")),
    request_body(content = ScenarioSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = ScenarioView),
        (status = 201, description = "Created", body = ScenarioView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "The scenario could not run (a step the transition table forbids, a last step that does not end the run, a step that would be due after 9999-12-31T23:59:59.999Z if a run started now); each problem named", body = ErrorBody),
    ))]
async fn put_scenario(
    world: Scope,
    Path(MatchPath { pattern }): Path<MatchPath>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let value = body.value()?;
    let now = world.clock.now();
    let (created, scenario) = world.sim.scenarios().put(&pattern, &value, now).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(scenario)).into_response())
}

/// Forgets a scenario; runs of its configs follow the next that fits.
#[utoipa::path(delete, path = "/_mock/scenarios/{match}", tag = "mock",
    params(("match" = String, Path, description = "The scenario's match")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 404, description = "No such scenario", body = ErrorBody),
    ))]
async fn delete_scenario(
    world: Scope,
    Path(MatchPath { pattern }): Path<MatchPath>,
) -> Result<StatusCode, ApiError> {
    if world.sim.scenarios().delete(&pattern).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_scenario(&pattern))
    }
}

/// A scenario as it is given: the same `steps` for every run, or `runs` with steps per
/// run. The last step must end the run, and each step must be one the transition table
/// allows after the one before (from `starting`). Its `match` is the path's; a body may
/// repeat it as `"match"`, which must then be the same.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documentation only: read by `Scenario::parse`
pub enum ScenarioSpec {
    Steps(StepsScenario),
    Runs(RunsScenario),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StepsScenario {
    #[schema(min_items = 1)]
    steps: Vec<StepSpec>,
    progression: Option<Progression>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RunsScenario {
    /// The steps of the first run, the second, ...; later runs follow the last.
    #[schema(min_items = 1)]
    runs: Vec<RunSpec>,
    progression: Option<Progression>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RunSpec {
    #[schema(min_items = 1)]
    steps: Vec<StepSpec>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StepSpec {
    state: JobState,
    /// The wait since the step before: `200ms`, `2s`, `10m`, `1h`. A run's steps must
    /// all be due by 9999-12-31T23:59:59.999Z, the latest time the mock can hold,
    /// counted from now (422 otherwise).
    #[schema(pattern = "^[0-9]{1,9}(ms|s|m|h)$")]
    after: Option<String>,
    /// Merged into the run's `result`.
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
}

fn unknown_scenario(pattern: &str) -> ApiError {
    ApiError::NotFound(format!("no scenario with match {pattern}"))
}

/// Where the clock stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClockView {
    pub mode: ClockMode,
    /// The mock's time, RFC 3339; never after 9999-12-31T23:59:59.999Z.
    #[schema(format = DateTime)]
    pub now: String,
}

fn clock_view(clock: &Clock) -> ClockView {
    ClockView {
        mode: clock.mode(),
        now: rfc3339(clock.now()),
    }
}

/// The clock: `system` or `manual`, and its time.
#[utoipa::path(get, path = "/_mock/clock", tag = "mock",
    responses((status = 200, description = "The clock", body = ClockView)))]
async fn get_clock(world: Scope) -> Json<ClockView> {
    Json(clock_view(&world.clock))
}

/// How far to move a manual clock.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documentation only: read by `advance_clock`
pub struct Advance {
    /// e.g. `10m`, `1h`, `250ms`. The clock cannot pass 9999-12-31T23:59:59.999Z, the
    /// end of RFC 3339's years: an advance that would is refused (422) and changes
    /// nothing.
    #[schema(example = "10m", pattern = "^[0-9]{1,9}(ms|s|m|h)$")]
    by: String,
}

/// Moves a manual clock forward; answers once every simulated step due within the span
/// has been applied, in order, each at its own due time.
#[utoipa::path(post, path = "/_mock/clock/advance", tag = "mock",
    request_body(content = Advance, content_type = "application/json"),
    responses(
        (status = 200, description = "The clock, moved", body = ClockView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "The clock is the system's (start with --clock manual)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "`by` is missing or not a duration, or would take the clock past 9999-12-31T23:59:59.999Z; nothing changes", body = ErrorBody),
    ))]
async fn advance_clock(
    world: Scope,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Json<ClockView>, ApiError> {
    let value = body.value()?;
    let by = value
        .get("by")
        .and_then(Value::as_str)
        .and_then(crate::duration::parse)
        .ok_or_else(|| ApiError::ValidationFailed {
            message: "advance takes {\"by\": D}, D a duration such as \"10m\"".to_owned(),
            violations: vec![Violation {
                field: "by".to_owned().into(),
                message: "missing or not a duration such as \"10m\", \"1h\", \"250ms\""
                    .to_owned()
                    .into(),
            }],
        })?;
    world.sim.advance(by).await?;
    // Sessions expire by the service's clock: its own world's.
    if Arc::ptr_eq(&world, state.world()) {
        state.sessions.clock_moved();
    }
    Ok(Json(clock_view(&world.clock)))
}

/// Every fault rule, spent and expired ones too, with how often each hit.
#[utoipa::path(get, path = "/_mock/faults", tag = "mock",
    responses((status = 200, description = "Every rule", body = Vec<RuleView>)))]
async fn list_faults(world: Scope) -> Json<Vec<RuleView>> {
    Json(world.faults.list(world.clock.now()))
}

/// A fault rule as it is given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documentation only: read by `Faults::add`
pub struct FaultSpec {
    /// Every field given must fit.
    #[serde(rename = "match")]
    matcher: Option<MatchSpec>,
    action: ActionSpec,
    /// How many requests it hits before it is spent.
    #[schema(minimum = 1)]
    times: Option<u32>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    probability: Option<f64>,
    #[schema(minimum = 0)]
    seed: Option<i64>,
    /// It expires by itself after this long, by the mock's clock; it must expire by
    /// 9999-12-31T23:59:59.999Z, the latest time the mock can hold (422 otherwise).
    #[schema(pattern = "^[0-9]{1,9}(ms|s|m|h)$")]
    ttl: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MatchSpec {
    #[schema(min_length = 1)]
    method: Option<String>,
    /// Exact, or a prefix when it ends in `*`.
    #[schema(min_length = 1)]
    path: Option<String>,
    #[schema(min_length = 1)]
    job_id: Option<String>,
    #[schema(min_length = 1)]
    job_config_id: Option<String>,
}

/// What a rule does: answer a status, delay, or drop the connection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ActionSpec {
    Status(StatusAction),
    Delay(DelayAction),
    Drop(DropAction),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct StatusAction {
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// Sent as `Retry-After`, in whole seconds rounded up.
    #[schema(pattern = "^[0-9]{1,9}(ms|s|m|h)$")]
    retry_after: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DelayAction {
    /// At most `1h`; one at least as long as the server's `--request-timeout` ends
    /// the request when the timeout does, unserved (408 `timeout`).
    #[schema(pattern = "^[0-9]{1,9}(ms|s|m|h)$")]
    delay: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DropAction {
    #[schema(schema_with = only_true)]
    drop: bool,
}

/// `true`, and nothing else.
fn only_true() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Boolean)
        .enum_values(Some([true]))
        .description(Some("Must be `true`."))
        .build()
}

/// Adds a fault rule; it applies to the Fusion routes, never to `/_mock`, `/metrics`,
/// `/openapi.json` or `/actuator`.
#[utoipa::path(post, path = "/_mock/faults", tag = "mock",
    request_body(content = FaultSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Added, with its id", body = RuleView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "The rule is not valid (a `ttl` that would expire it after 9999-12-31T23:59:59.999Z included); each problem named", body = ErrorBody),
    ))]
async fn add_fault(world: Scope, body: JsonBody) -> Result<Response, ApiError> {
    let value = body.value()?;
    let rule = world.faults.add(&value, world.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// Removes every fault rule.
#[utoipa::path(delete, path = "/_mock/faults", tag = "mock",
    responses((status = 204, description = "Every rule removed")))]
async fn delete_faults(world: Scope) -> Result<StatusCode, ApiError> {
    world.faults.clear().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct RulePath {
    id: String,
}

/// Removes one fault rule.
#[utoipa::path(delete, path = "/_mock/faults/{id}", tag = "mock",
    params(("id" = u64, Path, description = "The rule's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such rule", body = ErrorBody),
    ))]
async fn delete_fault(
    world: Scope,
    Path(RulePath { id }): Path<RulePath>,
) -> Result<StatusCode, ApiError> {
    let removed = match id.parse::<u64>() {
        Ok(id) => world.faults.remove(id).await?,
        Err(_) => false,
    };
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no fault rule with id {id}")))
    }
}
