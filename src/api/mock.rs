//! The mock's own routes, for tests to inspect, wait on and reset what clients did.
//!
//! - `GET    /_mock/runs`: runs with bookkeeping; filters `state`, `type`, `jobConfigId`;
//!   paging `limit`, `offset`
//! - `DELETE /_mock/runs`: forget every run
//! - `GET    /_mock/runs/{jobId}`: one run
//! - `DELETE /_mock/runs/{jobId}`: forget one run
//! - `GET    /_mock/runs/{jobId}/history`: its updates, oldest first
//! - `GET    /_mock/runs/{jobId}/wait`: answers once the run is in a state, or has ended
//! - `GET    /_mock/requests`: the journal; `DELETE` empties it
//! - `GET    /_mock/events`: accepted updates as Server-Sent Events
//! - `POST   /_mock/reset`: back to the start: no runs, journal, configs or faults
//! - `POST   /_mock/verify`: expectations on runs and the journal, checked in one call

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, Query, Scope};
use super::layers::record_job_id;
use crate::app::{AppState, MaxWait, Stopping};
use crate::error::{ApiError, ErrorBody};
use crate::journal::{JournalFilter, JournalView};
use crate::model::update::is_valid_job_id;
use crate::model::{JobState, Violation};
use crate::registry::{HistoryView, RunFilter, RunList, RunView, Until, UpdateEvent};
use crate::routes;
use crate::verify::Expectations;
use crate::world::World;

/// The routes that answer at once.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs, delete_runs))
        .routes(routes!(get_run, delete_run))
        .routes(routes!(get_history))
        .routes(routes!(list_requests, delete_requests))
        .routes(routes!(reset))
        .routes(routes!(verify))
}

/// The routes that answer when something happens: no request timeout applies to them.
pub fn long_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(wait_for_run))
        .routes(routes!(stream_events))
}

/// How long a wait takes when no `timeout` is given (or `--max-wait`, if shorter).
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListRunsQuery {
    /// A comma-separated list of states, e.g. `running,finished`; empty: no filter.
    #[param(
        pattern = "^((unknown|idle|starting|running|finishing|cancelling|finished|cancelled|error|skipped)(,(unknown|idle|starting|running|finishing|cancelling|finished|cancelled|error|skipped))*)?$"
    )]
    state: Option<String>,
    /// `jobConfig.type`, e.g. `aggregation`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    job_type: Option<String>,
    /// `jobConfig.id`.
    #[param(rename = "jobConfigId")]
    job_config_id: Option<String>,
    /// At most this many runs.
    #[param(minimum = 0)]
    limit: Option<i32>,
    /// Skip this many runs.
    #[param(minimum = 0)]
    offset: Option<i32>,
}

/// The runs, in the order they first appeared, with their current status and bookkeeping.
#[utoipa::path(
    get,
    path = "/_mock/runs",
    tag = "mock",
    params(ListRunsQuery),
    responses(
        (status = 200, description = "The matching runs", body = RunList),
        (status = 400, description = "A filter or paging parameter cannot be read", body = ErrorBody),
    )
)]
async fn list_runs(
    world: Scope,
    Query(query): Query<ListRunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    // An empty parameter (`?state=`) filters nothing, as if it were not given.
    let given = |value: Option<String>| value.filter(|v| !v.is_empty());
    let offset = non_negative("offset", query.offset)?;
    let limit = non_negative("limit", query.limit)?;
    let states = given(query.state)
        .as_deref()
        .map(parse_states)
        .transpose()?;
    let filter = RunFilter {
        states,
        job_type: given(query.job_type),
        job_config_id: given(query.job_config_id),
    };
    Ok(Json(world.registry.list(
        &filter,
        offset.unwrap_or(0),
        limit,
    )))
}

/// A paging or sequence number, which must not be negative.
fn non_negative<T: TryInto<usize> + Copy + std::fmt::Display>(
    field: &str,
    value: Option<T>,
) -> Result<Option<usize>, ApiError> {
    value
        .map(|v| {
            v.try_into()
                .map_err(|_| bad_parameter(field, format!("{field} must be 0 or more, not {v}")))
        })
        .transpose()
}

fn parse_states(list: &str) -> Result<Vec<JobState>, ApiError> {
    let names = list.split(',');
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
            field: "state".to_owned().into(),
            message: format!("\"{name}\" is not a state; use {}", JobState::NAMES).into(),
        })
        .collect();
    Err(ApiError::BadRequest {
        message: format!("the state filter must list states from {}", JobState::NAMES),
        violations,
    })
}

/// Forgets every run.
#[utoipa::path(delete, path = "/_mock/runs", tag = "mock",
    responses((status = 204, description = "Every run is forgotten")))]
async fn delete_runs(world: Scope) -> Result<StatusCode, ApiError> {
    world
        .forget_runs()
        .await
        .map_err(|cause| ApiError::StorageUnavailable(cause.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// One run.
#[utoipa::path(
    get,
    path = "/_mock/runs/{jobId}",
    tag = "mock",
    params(("jobId" = String, Path, description = "The run's jobId", min_length = 1, max_length = 128, pattern = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|\\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.[A-Za-z0-9._-]+)$")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
async fn get_run(world: Scope, Path(job_id): Path<String>) -> Result<Json<RunView>, ApiError> {
    record_job_id(&job_id);
    world
        .registry
        .run(&job_id)
        .map(Json)
        .ok_or_else(|| unknown_run(&job_id))
}

/// Forgets one run.
#[utoipa::path(
    delete,
    path = "/_mock/runs/{jobId}",
    tag = "mock",
    params(("jobId" = String, Path, description = "The run's jobId", min_length = 1, max_length = 128, pattern = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|\\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.[A-Za-z0-9._-]+)$")),
    responses(
        (status = 204, description = "The run is forgotten"),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
async fn delete_run(world: Scope, Path(job_id): Path<String>) -> Result<StatusCode, ApiError> {
    record_job_id(&job_id);
    if world.forget_run(&job_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_run(&job_id))
    }
}

/// A run's updates, oldest first, each exactly as posted.
#[utoipa::path(
    get,
    path = "/_mock/runs/{jobId}/history",
    tag = "mock",
    params(("jobId" = String, Path, description = "The run's jobId", min_length = 1, max_length = 128, pattern = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|\\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.[A-Za-z0-9._-]+)$")),
    responses(
        (status = 200, description = "The run's history", body = HistoryView),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
async fn get_history(
    world: Scope,
    Path(job_id): Path<String>,
) -> Result<Json<HistoryView>, ApiError> {
    record_job_id(&job_id);
    world
        .registry
        .history(&job_id)
        .map(Json)
        .ok_or_else(|| unknown_run(&job_id))
}

fn unknown_run(job_id: &str) -> ApiError {
    ApiError::NotFound(format!("no run with jobId {job_id}"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// The state to wait for; without it, wait for the run to end (finished, cancelled,
    /// error or skipped).
    #[param(value_type = Option<JobState>)]
    state: Option<String>,
    /// How long to wait: `300ms`, `5s`, `2m`, `1h`; `30s` when not given. A longer
    /// wait than `--max-wait` (1h unless set) is cut to it.
    #[param(example = "5s", pattern = "^[0-9]{1,9}(ms|s|m|h)$")]
    timeout: Option<String>,
}

/// Answers as soon as the run is in `state` (or, without `state`, has ended), waiting
/// for the run to appear if it does not exist yet; 408 at the timeout, with the run as
/// it is then when it exists.
#[utoipa::path(
    get,
    path = routes::WAIT,
    tag = "mock",
    params(("jobId" = String, Path, description = "The run's jobId", min_length = 1, max_length = 128, pattern = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|\\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.[A-Za-z0-9._-]+)$"), WaitQuery),
    responses(
        (status = 200, description = "The run, in the state waited for", body = RunView),
        (status = 400, description = "`state` or `timeout` cannot be read", body = ErrorBody),
        (status = 408, description = "The timeout passed first; `run` is the run as it is, when it exists", body = ErrorBody),
    )
)]
async fn wait_for_run(
    world: Scope,
    State(stopping): State<Stopping>,
    State(MaxWait(max_wait)): State<MaxWait>,
    Path(job_id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<RunView>, ApiError> {
    record_job_id(&job_id);
    if !is_valid_job_id(&job_id) {
        let message =
            format!("\"{job_id}\" is not a jobId: 1 to 128 of A-Z a-z 0-9 . _ -, not . or ..");
        return Err(bad_parameter("jobId", message));
    }
    let until = match query.state.as_deref() {
        None => Until::Ended,
        Some(name) => JobState::from_name(name).map(Until::State).ok_or_else(|| {
            let message = format!("\"{name}\" is not a state; use {}", JobState::NAMES);
            bad_parameter("state", message)
        })?,
    };
    let timeout = match query.timeout.as_deref() {
        None => DEFAULT_WAIT,
        Some(text) => parse_timeout(text)?,
    }
    .min(max_wait);
    let (message, run) = tokio::select! {
        outcome = world.registry.wait(&job_id, until, timeout) => match outcome {
            Ok(run) => return Ok(Json(run)),
            Err(timed_out) => (timed_out.to_string(), timed_out.run),
        },
        () = stopping.stopped() => {
            let run = world.registry.run(&job_id);
            let message = format!("stopped waiting for run {job_id} to {until}: the server is shutting down");
            (message, run)
        }
        () = world.closed() => {
            return Err(ApiError::NotFound(format!(
                "stopped waiting for run {job_id} to {until}: its session was deleted or expired"
            )));
        }
    };
    Err(ApiError::WaitTimedOut {
        message,
        run: run.and_then(|run| serde_json::value::to_raw_value(&run).ok()),
    })
}

fn parse_timeout(text: &str) -> Result<Duration, ApiError> {
    crate::duration::parse(text).ok_or_else(|| {
        bad_parameter(
            "timeout",
            format!("\"{text}\" is not a duration; write a number and a unit: 300ms, 5s, 2m, 1h"),
        )
    })
}

fn bad_parameter(field: &str, message: String) -> ApiError {
    ApiError::BadRequest {
        message: message.clone(),
        violations: vec![Violation {
            field: field.to_owned().into(),
            message: message.into(),
        }],
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct RequestsQuery {
    /// Only requests about this run.
    #[param(rename = "jobId")]
    job_id: Option<String>,
    /// Only requests answered with this status.
    #[param(minimum = 0, maximum = 65535)]
    status: Option<u16>,
    /// Only requests refused with this error code.
    code: Option<String>,
    /// Only entries with a greater `seq`.
    #[param(minimum = 0)]
    since: Option<i64>,
}

/// The journal: every request to the Fusion surface, accepted or refused, oldest first.
#[utoipa::path(
    get,
    path = routes::JOURNAL,
    tag = "mock",
    params(RequestsQuery),
    responses(
        (status = 200, description = "The matching entries, and how many were dropped", body = JournalView),
        (status = 400, description = "A filter cannot be read", body = ErrorBody),
    )
)]
async fn list_requests(
    world: Scope,
    Query(query): Query<RequestsQuery>,
) -> Result<Json<JournalView>, ApiError> {
    let given = |value: Option<String>| value.filter(|v| !v.is_empty());
    let since = non_negative("since", query.since)?.map(|since| since as u64);
    Ok(Json(world.journal.view(&JournalFilter {
        job_id: given(query.job_id),
        status: query.status,
        code: given(query.code),
        since,
    })))
}

/// Empties the journal.
#[utoipa::path(delete, path = routes::JOURNAL, tag = "mock",
    responses((status = 204, description = "The journal is empty")))]
async fn delete_requests(world: Scope) -> StatusCode {
    world.journal.clear();
    StatusCode::NO_CONTENT
}

/// Forgets every run, the journal, job configs, simulated runs and fault rules; the
/// scenarios are those of `--scenarios` again; the clock stays where it is. A fresh
/// mock for the next test.
#[utoipa::path(post, path = "/_mock/reset", tag = "mock",
    responses((status = 204, description = "Everything is forgotten")))]
async fn reset(world: Scope) -> Result<StatusCode, ApiError> {
    world
        .reset()
        .await
        .map_err(|cause| ApiError::StorageUnavailable(cause.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Expectations on what clients did, checked in one call: each run's states (in order,
/// a state repeated by consecutive updates said once) and update count, and the number
/// of refused requests and of updates with a warning in the journal, since the last
/// reset. Every key is optional. A check that needs entries `--max-history` or
/// `--journal-size` dropped fails, saying so.
#[utoipa::path(post, path = "/_mock/verify", tag = "mock",
    request_body(content = VerifySpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Every expectation holds", body = Verified),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "Some expectations do not hold: a violation for each, expected and actual in words", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "An expectation cannot be read; each problem named", body = ErrorBody),
    ))]
async fn verify(world: Scope, body: JsonBody) -> Result<Json<Verified>, ApiError> {
    let expectations = Expectations::parse(&body.value()?)?;
    expectations.check(&world.registry, &world.journal)?;
    Ok(Json(Verified { ok: true }))
}

/// What `POST /_mock/verify` takes: every key optional.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documentation only: read by `verify::Expectations::parse`
pub struct VerifySpec {
    /// Per jobId: `{"states": ["starting", "running", "finished"], "updates": 3}`.
    #[schema(value_type = Option<std::collections::BTreeMap<String, RunExpectation>>)]
    runs: Option<serde_json::Value>,
    /// How many requests to the Fusion routes were refused (or dropped by a fault).
    #[schema(minimum = 0)]
    refused: Option<u64>,
    /// How many accepted status updates carried a warning.
    #[schema(minimum = 0)]
    warnings: Option<u64>,
}

/// What is expected of one run.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documentation only
pub struct RunExpectation {
    /// The states its accepted updates went through, oldest first, repeats said once.
    states: Option<Vec<JobState>>,
    /// How many updates it accepted, exact repeats aside.
    #[schema(minimum = 0)]
    updates: Option<u64>,
}

/// Every expectation holds.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Verified {
    ok: bool,
}

/// Accepted updates as they happen, as Server-Sent Events: each event's `id` is its
/// `seq`, its data `{"jobId", "seq", "receivedAt", "update"}`. With `Last-Event-ID: N`,
/// the updates after `N` still held in history come first, in order. A client that
/// falls more than 1024 updates behind gets an event named `lagged` and the stream
/// ends; it may resume with `Last-Event-ID`.
#[utoipa::path(
    get,
    path = routes::EVENTS,
    tag = "mock",
    params(("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq", minimum = 0, nullable = false)),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "Last-Event-ID is not a seq", body = ErrorBody),
    )
)]
async fn stream_events(
    world: Scope,
    State(stopping): State<Stopping>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(value) => {
            let seq = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .and_then(|v| u64::try_from(v).ok());
            Some(seq.ok_or_else(|| {
                bad_parameter(
                    "Last-Event-ID",
                    "Last-Event-ID must be the seq of an event, a whole number".to_owned(),
                )
            })?)
        }
    };
    // Subscribe, then read what is already recorded: every seq up to `until` is in
    // history now, and every later one will come through the subscription.
    let feed = Feed {
        receiver: world.registry.subscribe(),
        until: world.registry.last_seq(),
        backlog_after: resume,
        page: VecDeque::new(),
        world: Arc::clone(&world),
        stopping,
        done: false,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default().text("keep-alive")))
}

/// How many missed updates are read from history at a time for a resuming client.
const BACKLOG_PAGE: usize = 256;

/// One subscriber's events: the missed updates still in history, page by page, then
/// the live ones.
struct Feed {
    /// Its world: the stream ends when the world is closed (its session deleted).
    world: Arc<World>,
    receiver: broadcast::Receiver<Arc<UpdateEvent>>,
    stopping: Stopping,
    /// The last seq recorded when the client connected: the backlog ends there, the
    /// live events begin after it.
    until: u64,
    /// While the backlog is being sent: the seq it has been sent up to.
    backlog_after: Option<u64>,
    page: VecDeque<UpdateEvent>,
    done: bool,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.page.pop_front() {
                return Some(update_event(&event));
            }
            if let Some(after) = self.backlog_after {
                let page = self
                    .world
                    .registry
                    .updates_between(after, self.until, BACKLOG_PAGE);
                self.backlog_after = page.last().map(|event| event.seq);
                self.page.extend(page);
                continue;
            }
            let received = tokio::select! {
                received = self.receiver.recv() => received,
                () = self.stopping.stopped() => return None,
                () = self.world.closed() => return None,
            };
            match received {
                Ok(event) if event.seq <= self.until => continue,
                Ok(event) => {
                    self.until = event.seq;
                    return Some(update_event(&event));
                }
                Err(RecvError::Lagged(missed)) => {
                    self.done = true;
                    let data = serde_json::json!({"missed": missed, "lastEventId": self.until});
                    return Some(Event::default().event("lagged").data(data.to_string()));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// One event of the stream: `id` the `seq`, `data` one JSON text `{"jobId", "seq",
/// "receivedAt", "update"}`; an event named `lagged` has no `id`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: events are written by axum's `Event`
pub struct SseEvent {
    id: Option<String>,
    /// Absent for an update; `lagged` when the subscriber fell behind.
    event: Option<String>,
    data: String,
    retry: Option<u64>,
}

fn update_event(event: &UpdateEvent) -> Event {
    let data = serde_json::to_string(event).unwrap_or_default();
    Event::default().id(event.seq.to_string()).data(data)
}
