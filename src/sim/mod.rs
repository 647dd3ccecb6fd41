//! The simulation of launched runs: a launch, each step of the run's scenario, a cancel.
//!
//! A simulated step is an update like a driver's: it goes through the update path
//! ([`Updates::submit`]), so it is judged and recorded by the registry, journaled,
//! counted and published, and a waiter or a subscriber cannot tell it from a driver's
//! report (its journal entry says `simulated`). The simulation never writes to the
//! registry any other way.
//!
//! Steps due by the clock sit in the [`queue`]. With the system clock a driver task
//! sleeps until the next is due; with a manual clock nothing moves until
//! [`Sim::advance`], which sets the clock to each due time in turn and applies the step.
//! Steps due by polls are applied by the routes that poll ([`Sim::poll`]).

pub mod queue;
pub mod scenario;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use self::queue::{Outcome, Queue};
use self::scenario::MergedResult;
use crate::clock::{Clock, ClockMode, END_OF_TIME, later, past_the_end};
use crate::configs::{self, Configs};
use crate::error::ApiError;
use crate::model::json::RawJson;
use crate::model::time::{ATTOS_PER_MILLI, rfc3339};
use crate::model::{JobState, Problem, Timestamp, Violation};
use crate::registry::{Creates, Registry};
use crate::store::Write;
use crate::sync::lock;
use crate::updates::{Source, Updates};
pub use scenario::{Progression, Scenario, ScenarioView, Scenarios, Step};

/// A launched run: its jobId and JobStatus.
pub type Launched = (Arc<str>, Box<RawValue>);

/// How long a simulated step the store could not keep waits before it is tried again,
/// with the system clock: as often as the store itself tries.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How long a cancelled run stays `cancelling` before it is `cancelled`.
const CANCEL_TAKES: Duration = Duration::from_millis(100);

pub struct Sim {
    updates: Arc<Updates>,
    registry: Arc<Registry>,
    clock: Arc<Clock>,
    configs: Arc<Configs>,
    scenarios: Scenarios,
    queue: Mutex<Queue>,
    /// How many runs of each config have been launched, for scenarios given per run.
    launches: Mutex<HashMap<String, u64>>,
    /// Wakes the driver when a step is scheduled.
    wake: Arc<Notify>,
    driver_started: AtomicBool,
    /// One advance at a time, so steps are applied in due order.
    advancing: tokio::sync::Mutex<()>,
}

impl Sim {
    pub fn new(
        updates: Arc<Updates>,
        registry: Arc<Registry>,
        clock: Arc<Clock>,
        configs: Arc<Configs>,
        scenarios: Scenarios,
    ) -> Self {
        Sim {
            updates,
            registry,
            clock,
            configs,
            scenarios,
            queue: Mutex::new(Queue::default()),
            launches: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            driver_started: AtomicBool::new(false),
            advancing: tokio::sync::Mutex::new(()),
        }
    }

    /// The scenarios a launched run's steps come from.
    pub fn scenarios(&self) -> &Scenarios {
        &self.scenarios
    }

    // --- Launches ------------------------------------------------------------------

    /// Launches a run of a config given as a JSON body: `POST /job-launcher/launcher`.
    pub async fn launch_posted(
        &self,
        body: &[u8],
        media_type: Option<Problem>,
    ) -> Result<Launched, ApiError> {
        let (config_id, config) = configs::read_launched(body, media_type)?;
        self.launch(&config_id, &config).await
    }

    /// Launches a run of a known config: `POST /api/spark/jobs/{id}`.
    pub async fn launch_known(&self, id: &str) -> Option<Result<Launched, ApiError>> {
        let config = self.configs.get(id)?;
        Some(self.launch(id, &config).await)
    }

    async fn launch(&self, config_id: &str, config: &RawJson) -> Result<Launched, ApiError> {
        let scenario = self.scenarios.for_config(config_id);
        // A run whose steps could not all come is refused before it exists.
        let next = lock(&self.launches).get(config_id).map_or(1, |n| n + 1);
        let late = scenario.past_the_end(Some(next), self.clock.now());
        if !late.is_empty() {
            return Err(ApiError::ValidationFailed {
                message: format!(
                    "the scenario {} cannot run to its end from now: {}: {}",
                    scenario.pattern, late[0].field, late[0].message
                ),
                violations: late,
            });
        }
        let job_id = self.fresh_job_id();
        let body = to_json(&LaunchedStatus {
            state: scenario::LAUNCH_STATE,
            job_id: &job_id,
            job_config: config,
            hostname: format!("driver-{job_id}"),
            result: LaunchedResult {
                job_config_id: config_id,
                job_run_id: &job_id,
            },
        })?;
        self.updates
            .submit(
                body.as_bytes(),
                Vec::new(),
                Source::Simulation,
                Creates::Yes,
            )
            .await
            .outcome?;
        let nth = {
            let mut launches = lock(&self.launches);
            let count = launches.entry(config_id.to_owned()).or_insert(0);
            *count += 1;
            *count
        };
        let launched_at = self.clock.now();
        self.plan(
            &job_id,
            scenario.steps_for(nth).iter().cloned().collect(),
            scenario.progression,
            launched_at,
        );
        let status = self
            .registry
            .status(&job_id)
            .ok_or_else(|| ApiError::Internal(format!("run {job_id} was launched but is gone")))?;
        Ok((job_id, status))
    }

    /// Twelve lowercase letters no run has, as Fusion makes them.
    fn fresh_job_id(&self) -> Arc<str> {
        loop {
            let id: String = std::iter::repeat_with(fastrand::lowercase)
                .take(12)
                .collect();
            if !self.registry.contains(&id) {
                return Arc::from(id);
            }
        }
    }

    // --- Steps ---------------------------------------------------------------------

    /// Replaces run `job_id`'s steps to come, scheduling the first by time if need be.
    fn plan(
        &self,
        job_id: &Arc<str>,
        pending: VecDeque<Step>,
        progression: Progression,
        from: DateTime<Utc>,
    ) {
        let scheduled = lock(&self.queue).plan(job_id, pending, progression, from);
        if scheduled {
            self.wake_driver();
        }
    }

    /// Applies run `job_id`'s next step at `at`, and schedules the one after. A step the
    /// store cannot keep (503) is put back, to be taken again: by the next poll, the next
    /// advance of a manual clock, or a second later by the system's; the error says so.
    async fn step(&self, job_id: &Arc<str>, at: DateTime<Utc>) -> Result<(), ApiError> {
        let Some(taken) = lock(&self.queue).take(job_id) else {
            return Ok(());
        };
        let Some(body) = self.step_body(job_id, &taken.step, at) else {
            lock(&self.queue).end(job_id);
            return Ok(());
        };
        let outcome = self
            .updates
            .submit(body.as_bytes(), Vec::new(), Source::Simulation, Creates::No)
            .await
            .outcome;
        let (settled, result) = match outcome {
            Ok(_) => (Outcome::Applied { at }, Ok(())),
            Err(refusal @ ApiError::StorageUnavailable(_)) => {
                let (from, after) = match self.clock.mode() {
                    ClockMode::System => (Utc::now(), STORE_RETRY),
                    ClockMode::Manual => (at, Duration::ZERO),
                };
                (Outcome::Deferred { from, after }, Err(refusal))
            }
            Err(refusal) => {
                let current = lock(&self.queue).settle(job_id, taken, Outcome::Refused);
                if current {
                    tracing::warn!(job_id = %job_id, reason = %refusal, "a simulated step was refused; the simulation of this run stops");
                }
                return Ok(());
            }
        };
        let current = lock(&self.queue).settle(job_id, taken, settled);
        if current { result } else { Ok(()) }
    }

    /// The update a step posts: its state, its result merged into the run's, and the
    /// times a run of that state has. `None` when the run is gone or has ended.
    fn step_body(&self, job_id: &str, step: &Step, at: DateTime<Utc>) -> Option<String> {
        let (facts, result) = self.registry.facts(job_id)?;
        if facts.state.is_some_and(JobState::is_ended) {
            return None;
        }
        let at_text = rfc3339(at);
        let start = facts.start_time;
        let reaches_running = step.state == JobState::Running || step.state.is_ended();
        // An ended run's duration, in milliseconds since it started (0 if it never ran).
        let ends = if step.state.is_ended() {
            let end = Timestamp::parse(&at_text)?;
            let start_attos = start.as_ref().map_or(end.attos(), Timestamp::attos);
            let millis = (end.attos() - start_attos).max(0) / ATTOS_PER_MILLI;
            Some(u64::try_from(millis).unwrap_or(u64::MAX))
        } else {
            None
        };
        let current = result.as_ref().map(RawJson::as_str);
        to_json(&StepStatus {
            job_id,
            state: step.state,
            result: step
                .result
                .as_ref()
                .map(|step_result| MergedResult::new(current, step_result)),
            start_time: (start.is_none() && reaches_running).then_some(at_text.as_str()),
            end_time: ends.map(|_| at_text.as_str()),
            duration: ends,
        })
        .ok()
    }

    /// A poll of these runs: each simulated run that moves by polls takes its next step.
    pub async fn poll<'a>(&self, job_ids: impl IntoIterator<Item = &'a str>) {
        let polled = lock(&self.queue).polled(job_ids);
        self.step_each(polled).await;
    }

    /// A poll of every run.
    pub async fn poll_all(&self) {
        let polled = lock(&self.queue).all_polled();
        self.step_each(polled).await;
    }

    async fn step_each(&self, job_ids: Vec<Arc<str>>) {
        let now = self.clock.now();
        for job_id in job_ids {
            // A step the store cannot keep waits for the next poll; this one answers the
            // run as it is.
            let _ = self.step(&job_id, now).await;
        }
    }

    /// Cancels run `job_id`: `cancelling` now, `cancelled` 100 ms of the clock later.
    /// Gives its status; `None` when there is no such run.
    pub async fn cancel(&self, job_id: &Arc<str>) -> Option<Result<Box<RawValue>, ApiError>> {
        let (facts, _) = self.registry.facts(job_id)?;
        match facts.state {
            Some(state) if state.is_ended() => {
                return Some(Err(ApiError::Conflict {
                    message: format!("run {job_id} is {state}; an ended run cannot be cancelled"),
                    violations: vec![Violation::new("state", &format!("{state} has ended"))],
                }));
            }
            Some(JobState::Cancelling) => {}
            _ => {
                let body = match to_json(&StepStatus::only(job_id, JobState::Cancelling)) {
                    Ok(body) => body,
                    Err(bug) => return Some(Err(bug)),
                };
                if let Err(refusal) = self
                    .updates
                    .submit(body.as_bytes(), Vec::new(), Source::Simulation, Creates::No)
                    .await
                    .outcome
                {
                    return Some(Err(refusal));
                }
                // At the end of time at the latest: a cancel is never refused for it.
                let now = self.clock.now();
                let room = (END_OF_TIME - now).to_std().unwrap_or(Duration::ZERO);
                let cancelled = Step {
                    state: JobState::Cancelled,
                    after: CANCEL_TAKES.min(room),
                    result: None,
                };
                self.plan(job_id, VecDeque::from([cancelled]), Progression::Time, now);
            }
        }
        self.registry.status(job_id).map(Ok)
    }

    // --- The clock -----------------------------------------------------------------

    /// Moves a manual clock forward by `by`, applying in order every step due within the
    /// span, each at its own due time. Gives the clock's new time.
    pub async fn advance(&self, by: Duration) -> Result<DateTime<Utc>, ApiError> {
        if self.clock.mode() != ClockMode::Manual {
            return Err(ApiError::Conflict {
                message: "the clock is the system's; start with --clock manual to advance it"
                    .to_owned(),
                violations: vec![Violation::new("clock", "system")],
            });
        }
        let _one_at_a_time = self.advancing.lock().await;
        let now = self.clock.now();
        let Some(target) = later(now, by) else {
            let what = format!("advancing by {}", crate::duration::format(by));
            let violation = past_the_end("by", &what, now);
            return Err(ApiError::ValidationFailed {
                message: violation.message.to_string(),
                violations: vec![violation],
            });
        };
        loop {
            let due = lock(&self.queue).pop_due(target);
            let Some(timer) = due else { break };
            self.clock.set(timer.due);
            // The clock stays where the step that could not be stored is due, and the
            // step waits there for the next advance.
            self.step(&timer.job_id, timer.due).await?;
        }
        self.clock.set(target);
        Ok(self.clock.now())
    }

    /// Wakes the driver of a system clock: a step has been scheduled.
    fn wake_driver(&self) {
        if self.clock.mode() == ClockMode::System {
            self.wake.notify_one();
        }
    }

    /// Runs the steps of a system clock as they fall due, until the simulation is gone:
    /// started once, on the current runtime.
    pub fn start_driver(self: &Arc<Self>) {
        if self.clock.mode() != ClockMode::System
            || self.driver_started.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let weak = Arc::downgrade(self);
        let wake = Arc::clone(&self.wake);
        tokio::spawn(drive(weak, wake));
    }

    // --- Forgetting ----------------------------------------------------------------

    /// What a reset writes, and what it then does in memory once that is durable: the
    /// scenarios of the start again, every simulated run forgotten.
    pub async fn reset_staged(self: &Arc<Self>) -> (Option<Write>, Box<dyn FnOnce() + Send>) {
        let (write, scenarios_then) = self.scenarios.reset_staged().await;
        let sim = Arc::clone(self);
        let then = move || {
            scenarios_then();
            sim.forget_simulations();
            lock(&sim.launches).clear();
        };
        (write, Box::new(then))
    }

    /// Ends every simulated run: their runs are forgotten.
    pub fn forget_simulations(&self) {
        lock(&self.queue).clear();
    }

    /// Ends run `job_id`'s simulation, if it has one: the run is forgotten, and a step
    /// must not bring it back.
    pub fn forget_simulation(&self, job_id: &str) {
        lock(&self.queue).end(job_id);
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Lets the driver see that it has nothing left to drive.
        self.wake.notify_one();
    }
}

/// The driver of a system clock: applies the steps due, then sleeps until the next is
/// due or one is scheduled.
async fn drive(sim: Weak<Sim>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let Some(sim) = sim.upgrade() else {
                return;
            };
            let now = sim.clock.now();
            loop {
                let due = lock(&sim.queue).pop_due(now);
                let Some(timer) = due else { break };
                // A step the store cannot keep is due again a second later.
                let _ = sim.step(&timer.job_id, timer.due).await;
            }
            lock(&sim.queue).next_due()
        };
        match next {
            Some(due) => {
                let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// A launched run's first status, `starting`: what Fusion answers a launch.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LaunchedStatus<'a> {
    state: JobState,
    job_id: &'a str,
    /// The config as posted.
    job_config: &'a RawJson,
    hostname: String,
    result: LaunchedResult<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LaunchedResult<'a> {
    job_config_id: &'a str,
    job_run_id: &'a str,
}

/// The status update a simulated step (or a cancel) posts.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepStatus<'a> {
    job_id: &'a str,
    state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<MergedResult<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
}

impl<'a> StepStatus<'a> {
    /// An update of the state alone.
    fn only(job_id: &'a str, state: JobState) -> Self {
        StepStatus {
            job_id,
            state,
            result: None,
            start_time: None,
            end_time: None,
            duration: None,
        }
    }
}

/// A body the simulation posts, as JSON.
fn to_json(body: &impl Serialize) -> Result<String, ApiError> {
    serde_json::to_string(body)
        .map_err(|e| ApiError::Internal(format!("a simulated update cannot be written: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_launch_posts_fusions_starting_status_with_the_config_as_posted() {
        let config = RawJson::whole(Arc::from(r#" { "id" : "nightly", "big": 1e400 } "#));
        let body = to_json(&LaunchedStatus {
            state: scenario::LAUNCH_STATE,
            job_id: "abcdefghijkl",
            job_config: &config,
            hostname: "driver-abcdefghijkl".to_owned(),
            result: LaunchedResult {
                job_config_id: "nightly",
                job_run_id: "abcdefghijkl",
            },
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"state":"starting","jobId":"abcdefghijkl","jobConfig":{ "id" : "nightly", "big": 1e400 },"hostname":"driver-abcdefghijkl","result":{"jobConfigId":"nightly","jobRunId":"abcdefghijkl"}}"#
        );
    }

    #[test]
    fn a_step_posts_only_the_fields_its_state_has() {
        let cancel = to_json(&StepStatus::only("r\"1", JobState::Cancelling)).unwrap();
        assert_eq!(cancel, r#"{"jobId":"r\"1","state":"cancelling"}"#);
        let step = serde_json::json!({"docs": 5});
        let end = to_json(&StepStatus {
            job_id: "r1",
            state: JobState::Finished,
            result: Some(MergedResult::new(
                Some(r#"{"jobRunId": "r1"}"#),
                step.as_object().unwrap(),
            )),
            start_time: None,
            end_time: Some("2026-01-01T00:00:01.000Z"),
            duration: Some(1000),
        })
        .unwrap();
        assert_eq!(
            end,
            r#"{"jobId":"r1","state":"finished","result":{"jobRunId":"r1","docs":5},"endTime":"2026-01-01T00:00:01.000Z","duration":1000}"#
        );
    }
}
