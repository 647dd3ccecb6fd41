//! Jobs: the one path every status update takes into the registry, posted or simulated,
//! and the simulation of launched runs: configs, scenarios, steps due by the clock or
//! by polls, cancels.
//!
//! A simulated step is an update like any other: it is parsed, judged and recorded by
//! the registry, journaled, counted and published, so a waiter or a subscriber cannot
//! tell it from a driver's report (its journal entry says `simulated`).
//!
//! Steps due by time sit in one queue ordered by due time. With the system clock a
//! driver task sleeps until the next is due; with a manual clock nothing moves until
//! [`Jobs::advance`], which sets the clock to each due time in turn and applies the step.

pub mod scenario;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::clock::{Clock, ClockMode, END_OF_TIME, later, past_the_end};
use crate::error::ApiError;
use crate::journal::{Journal, Record};
use crate::metrics::Metrics;
use crate::model::json::{self, RawJson};
use crate::model::time::{ATTOS_PER_MILLI, rfc3339};
use crate::model::{JobState, Problem, StatusUpdate, Timestamp, Violation};
use crate::registry::{Accepted, Creates, DurableWitness, Registry};
use crate::routes;
use crate::store::{Saved, Store, Unavailable, Write};
use crate::sync::lock;
pub use scenario::{Progression, Scenario, ScenarioView, Step};

/// A launched run: its jobId and JobStatus.
pub type Launched = (Arc<str>, Box<RawValue>);

/// How long a simulated step the store could not keep waits before it is tried again,
/// with the system clock: as often as the store itself tries.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How long a cancelled run stays `cancelling` before it is `cancelled`.
const CANCEL_TAKES: Duration = Duration::from_millis(100);

/// What became of a submitted update.
#[derive(Debug)]
pub struct Submitted {
    /// Its jobId, when it names one (even one that is not well-formed).
    pub job_id: Option<Arc<str>>,
    pub outcome: Result<Accepted, ApiError>,
    /// The `seq` of its journal entry.
    pub journal_seq: u64,
}

/// Where an update came from, for the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A client's post to the status route.
    Request,
    /// A simulated step: a launch, a scenario's step, a cancel; journaled `simulated`.
    Simulation,
}

pub struct Jobs {
    registry: Arc<Registry>,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    clock: Arc<Clock>,
    /// Job configs by id, in the order they became known.
    configs: Saved<Configs>,
    scenarios: Saved<Vec<Arc<Scenario>>>,
    /// The scenarios of `--scenarios`, which a reset brings back.
    initial_scenarios: Vec<Arc<Scenario>>,
    sims: Mutex<Sims>,
    /// How many runs of each config have been launched, for scenarios given per run.
    launches: Mutex<HashMap<String, u64>>,
    /// Wakes the driver when a step is scheduled.
    wake: Arc<Notify>,
    driver_started: AtomicBool,
    /// One advance at a time, so steps are applied in due order.
    advancing: tokio::sync::Mutex<()>,
}

/// Job configs by id, in the order they became known.
type Configs = IndexMap<String, RawJson>;

#[derive(Default)]
struct Sims {
    runs: HashMap<Arc<str>, Sim>,
    timers: BinaryHeap<Reverse<Timer>>,
    scheduled: u64,
}

/// A simulated run's steps still to come.
struct Sim {
    pending: VecDeque<Step>,
    progression: Progression,
    /// Bumped when the plan changes (a cancel), so that older timers are ignored.
    generation: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    due: DateTime<Utc>,
    /// Timers due at the same instant go in the order they were set.
    order: u64,
    job_id: Arc<str>,
    generation: u64,
}

impl Jobs {
    pub fn new(
        registry: Arc<Registry>,
        journal: Arc<Journal>,
        metrics: Arc<Metrics>,
        clock: Arc<Clock>,
        scenarios: Vec<Scenario>,
    ) -> Self {
        let scenarios: Vec<Arc<Scenario>> = scenarios.into_iter().map(Arc::new).collect();
        Jobs {
            registry,
            journal,
            metrics,
            clock,
            configs: Saved::new(IndexMap::new(), render_configs),
            scenarios: Saved::new(scenarios.clone(), render_scenarios),
            initial_scenarios: scenarios,
            sims: Mutex::new(Sims::default()),
            launches: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            driver_started: AtomicBool::new(false),
            advancing: tokio::sync::Mutex::new(()),
        }
    }

    /// Saves scenarios and configs to `store` on every change, starting from what it
    /// saved before (which wins over the scenarios given at start; a reset brings those
    /// back).
    pub fn persist_to(
        &mut self,
        store: &Arc<Store>,
        scenarios: Option<&str>,
        configs: Option<&str>,
    ) -> Result<(), String> {
        let scenarios = match scenarios {
            Some(saved) => scenario::parse_list(saved)
                .map_err(|e| format!("the saved scenarios cannot be read: {e}"))?
                .into_iter()
                .map(Arc::new)
                .collect(),
            None => self.initial_scenarios.clone(),
        };
        let mut known = IndexMap::new();
        if let Some(saved) = configs {
            let saved: Vec<&RawValue> = serde_json::from_str(saved)
                .map_err(|e| format!("the saved configs cannot be read: {e}"))?;
            for config in saved {
                let id = ConfigBody::read(config.get().as_bytes())
                    .ok()
                    .and_then(|c| {
                        c.member("id")
                            .and_then(json::as_string)
                            .map(|id| id.into_owned())
                    })
                    .ok_or_else(|| format!("a saved config has no id: {}", config.get()))?;
                known.insert(id, RawJson::whole(Arc::from(config.get())));
            }
        }
        let store = Arc::clone(store);
        self.scenarios =
            Saved::persisted(scenarios, Arc::clone(&store), "scenarios", render_scenarios);
        self.configs = Saved::persisted(known, store, "configs", render_configs);
        Ok(())
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Parses, judges and applies one status update: the path of every update. Gives the
    /// jobId when one could be read, and the outcome. With [`Creates::No`] the update is
    /// only for a run that exists (a simulated step), so a forgotten run stays forgotten.
    ///
    /// The update is journaled (as a POST of the status route) and counted here, an
    /// accepted one before a waiter or a subscriber can hear of it: a test that has
    /// seen a run change always finds the request that changed it in the journal.
    pub async fn submit(
        &self,
        body: &[u8],
        problems: Vec<Problem>,
        source: Source,
        creates: Creates,
    ) -> Submitted {
        let journaling = self.journaling(source);
        let (job_id, update, problems) = match self.read_update(body, problems, &journaling) {
            Ok(read) => read,
            Err(refused) => return refused,
        };
        if self.registry.store().is_some() {
            // Boxed: the in-memory path, the busy one, keeps a small future.
            return Box::pin(self.submit_durably(job_id, update, problems, creates, journaling))
                .await;
        }
        let config = config_of(&update);
        let journaled = std::cell::Cell::new(None);
        let witness = |accepted: &Accepted| {
            journaled.set(Some(journaling.record(Some(&job_id), Ok(accepted))));
        };
        let outcome =
            self.registry
                .apply_witnessed(Arc::clone(&job_id), update, problems, creates, &witness);
        if let (Ok(_), Some((id, config))) = (&outcome, config)
            && !self.knows_config(&id, &config)
        {
            self.configs
                .change_now(|configs| configs.insert(id, config.detached()));
        }
        // A refusal, or a repeat (which adds no history entry), was not witnessed.
        let journal_seq = journaled
            .get()
            .unwrap_or_else(|| journaling.record(Some(&job_id), outcome.as_ref()));
        Submitted {
            job_id: Some(job_id),
            outcome,
            journal_seq,
        }
    }

    /// [`Jobs::submit`] with a store: a config the update makes known is written in the
    /// same transaction as the update, and both are applied once that is durable.
    async fn submit_durably(
        &self,
        job_id: Arc<str>,
        update: StatusUpdate,
        problems: Vec<Problem>,
        creates: Creates,
        journaling: Journaling,
    ) -> Submitted {
        let (also, remember) = match config_of(&update) {
            Some((id, config)) if !self.knows_config(&id, &config) => {
                let configs = self.configs.lock().await;
                let mut known = configs.value();
                known.insert(id, config.detached());
                let write = configs.document(&known).map(|(_, write)| write);
                (write, Some((configs, known)))
            }
            _ => (None, None),
        };
        let journaled = Arc::new(AtomicU64::new(0));
        let witness: DurableWitness = {
            let (journaling, journaled, job_id) = (
                journaling.clone(),
                Arc::clone(&journaled),
                Arc::clone(&job_id),
            );
            Box::new(move |accepted: &Accepted| {
                if let Some((configs, known)) = remember {
                    configs.install(known);
                }
                let seq = journaling.record(Some(&job_id), Ok(accepted));
                journaled.store(seq, Ordering::Relaxed);
            })
        };
        let outcome = self
            .registry
            .apply_durably(
                Arc::clone(&job_id),
                update,
                problems,
                creates,
                also,
                witness,
            )
            .await;
        let journal_seq = match journaled.load(Ordering::Relaxed) {
            0 => journaling.record(Some(&job_id), outcome.as_ref()),
            seq => seq,
        };
        Submitted {
            job_id: Some(job_id),
            outcome,
            journal_seq,
        }
    }

    /// Reads a status update: its jobId, the update, and the problems found so far; or,
    /// when it cannot be checked against a run (malformed, no jobId), its refusal,
    /// journaled.
    fn read_update(
        &self,
        body: &[u8],
        mut problems: Vec<Problem>,
        journaling: &Journaling,
    ) -> Result<(Arc<str>, StatusUpdate, Vec<Problem>), Submitted> {
        let update = match StatusUpdate::parse(body) {
            Ok((update, form)) => {
                problems.extend(form);
                update
            }
            Err(malformed) => {
                let refusal = ApiError::MalformedJson(malformed.0);
                return Err(Submitted {
                    job_id: None,
                    journal_seq: journaling.record(None, Err(&refusal)),
                    outcome: Err(refusal),
                });
            }
        };
        let Some(job_id) = update.job_id.clone() else {
            // Without a well-formed jobId there is no run to check the update against;
            // the journal still names the one it has, if it is a string.
            let named = update
                .members
                .get("jobId")
                .and_then(|raw| json::as_string(raw.as_str()))
                .map(|id| Arc::from(id.as_ref()));
            let refusal = ApiError::refusal(problems);
            return Err(Submitted {
                journal_seq: journaling.record(named.as_ref(), Err(&refusal)),
                job_id: named,
                outcome: Err(refusal),
            });
        };
        Ok((job_id, update, problems))
    }

    fn journaling(&self, source: Source) -> Journaling {
        Journaling {
            journal: Arc::clone(&self.journal),
            metrics: Arc::clone(&self.metrics),
            time: self.clock.now(),
            source,
        }
    }

    /// Whether config `id` is known exactly as `config`.
    fn knows_config(&self, id: &str, config: &RawJson) -> bool {
        self.configs
            .read()
            .get(id)
            .is_some_and(|known| known.as_str() == config.as_str())
    }

    /// Counts an update refused before it could be read (a body too large to read).
    pub fn count_refusal(&self, refusal: &ApiError) {
        self.metrics.update_refused(refusal.code());
    }

    // --- Configs -------------------------------------------------------------------

    /// Creates or replaces config `id`; `true` when it created it. The body's `id`, when
    /// given, must be `id`; it is added when missing.
    pub async fn put_config(
        &self,
        id: &str,
        body: &[u8],
        media_type: Option<Problem>,
    ) -> Result<(bool, Box<RawValue>), ApiError> {
        let config = ConfigBody::read(body)?;
        if let Some(problem) = media_type {
            return Err(ApiError::refusal(vec![problem]));
        }
        let mut violations = check_config_id(id, "id");
        match config.member("id") {
            None => {}
            Some(given) if json::as_string(given).is_some_and(|given| given == id) => {}
            Some(given) => violations.push(Violation {
                field: "id".to_owned().into(),
                message: format!("the body's id {given} differs from the path's \"{id}\"").into(),
            }),
        }
        violations.extend(config.check_type());
        if !violations.is_empty() {
            return Err(invalid_config(violations));
        }
        let text = config.with_id(id);
        let raw = RawJson::whole(Arc::from(text.as_str()));
        let id = id.to_owned();
        let created = self
            .configs
            .change(move |configs| configs.insert(id, raw).is_none())
            .await
            .map_err(not_stored)?;
        Ok((created, json::raw_value(text)))
    }

    pub fn config(&self, id: &str) -> Option<Box<RawValue>> {
        self.configs.read().get(id).map(RawJson::to_raw_value)
    }

    pub fn configs(&self) -> Vec<Box<RawValue>> {
        self.configs
            .read()
            .values()
            .map(RawJson::to_raw_value)
            .collect()
    }

    pub async fn delete_config(&self, id: &str) -> Result<bool, ApiError> {
        let id = id.to_owned();
        self.configs
            .change(move |configs| configs.shift_remove(&id).is_some())
            .await
            .map_err(not_stored)
    }

    // --- Scenarios -----------------------------------------------------------------

    pub fn scenarios(&self) -> Vec<ScenarioView> {
        self.scenarios.read().iter().map(|s| s.view()).collect()
    }

    pub fn scenario(&self, pattern: &str) -> Option<ScenarioView> {
        self.scenarios
            .read()
            .iter()
            .find(|s| s.pattern == pattern)
            .map(|s| s.view())
    }

    /// Adds or replaces the scenario for `pattern` (in place, keeping its turn); `true`
    /// when it added it.
    pub async fn put_scenario(
        &self,
        pattern: &str,
        body: &Value,
    ) -> Result<(bool, ScenarioView), ApiError> {
        let scenario = Scenario::parse(body, Some(pattern)).map_err(invalid_scenario)?;
        let late = scenario.past_the_end(None, self.clock.now());
        if !late.is_empty() {
            return Err(invalid_scenario(late));
        }
        let scenario = Arc::new(scenario);
        let view = scenario.view();
        let pattern = pattern.to_owned();
        let created = self
            .scenarios
            .change(
                move |scenarios| match scenarios.iter_mut().find(|s| s.pattern == pattern) {
                    Some(existing) => {
                        *existing = scenario;
                        false
                    }
                    None => {
                        scenarios.push(scenario);
                        true
                    }
                },
            )
            .await
            .map_err(not_stored)?;
        Ok((created, view))
    }

    pub async fn delete_scenario(&self, pattern: &str) -> Result<bool, ApiError> {
        let pattern = pattern.to_owned();
        self.scenarios
            .change(move |scenarios| {
                let before = scenarios.len();
                scenarios.retain(|s| s.pattern != pattern);
                scenarios.len() < before
            })
            .await
            .map_err(not_stored)
    }

    /// The scenario a run of config `id` goes through: an exact match, else the first
    /// wildcard that fits, in the order they were added, else the default.
    fn scenario_for(&self, id: &str) -> Arc<Scenario> {
        let scenarios = self.scenarios.read();
        let exact = scenarios.iter().find(|s| s.is_exact() && s.pattern == id);
        let found = exact.or_else(|| scenarios.iter().find(|s| !s.is_exact() && s.fits(id)));
        found
            .cloned()
            .unwrap_or_else(|| Arc::new(Scenario::default_for_all()))
    }

    // --- Runs ----------------------------------------------------------------------

    /// Launches a run of a config given as a JSON body: `POST /job-launcher/launcher`.
    pub async fn launch_posted(
        &self,
        body: &[u8],
        media_type: Option<Problem>,
    ) -> Result<Launched, ApiError> {
        let config = ConfigBody::read(body)?;
        if let Some(problem) = media_type {
            return Err(ApiError::refusal(vec![problem]));
        }
        let mut violations = match config.member("id").map(json::as_string) {
            Some(Some(id)) => check_config_id(&id, "id"),
            Some(None) => vec![violation("id", "must be a string: the config's name")],
            None => vec![violation("id", "missing: the config's name")],
        };
        violations.extend(config.check_type());
        if !violations.is_empty() {
            return Err(invalid_config(violations));
        }
        self.launch(&RawJson::whole(Arc::from(config.text.as_str())))
            .await
    }

    /// Launches a run of a known config: `POST /api/spark/jobs/{id}`.
    pub async fn launch_known(&self, id: &str) -> Option<Result<Launched, ApiError>> {
        let config = self.configs.read().get(id).cloned()?;
        Some(self.launch(&config).await)
    }

    async fn launch(&self, config: &RawJson) -> Result<Launched, ApiError> {
        let config_id = json::object_members(config.as_str())
            .ok()
            .and_then(|members| {
                members
                    .iter()
                    .rev()
                    .find(|(name, _)| name == "id")
                    .and_then(|(_, v)| json::as_string(v.get()).map(|s| s.into_owned()))
            })
            .unwrap_or_default();
        let scenario = self.scenario_for(&config_id);
        // A run whose steps could not all come is refused before it exists.
        let next = lock(&self.launches).get(&config_id).map_or(1, |n| n + 1);
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
        let mut body = String::with_capacity(config.as_str().len() + 200);
        let _ = write!(
            body,
            "{{\"state\":\"{}\",\"jobId\":\"{job_id}\",\"jobConfig\":{},\"hostname\":\"driver-{job_id}\",\
             \"result\":{{\"jobConfigId\":{},\"jobRunId\":\"{job_id}\"}}}}",
            scenario::LAUNCH_STATE,
            config.as_str(),
            Value::from(config_id.as_str()),
        );
        self.submit(
            body.as_bytes(),
            Vec::new(),
            Source::Simulation,
            Creates::Yes,
        )
        .await
        .outcome?;
        let nth = {
            let mut launches = lock(&self.launches);
            let count = launches.entry(config_id.clone()).or_insert(0);
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

    /// Replaces run `job_id`'s steps to come, scheduling the first by time if need be.
    fn plan(
        &self,
        job_id: &Arc<str>,
        pending: VecDeque<Step>,
        progression: Progression,
        from: DateTime<Utc>,
    ) {
        let mut sims = lock(&self.sims);
        let generation = sims.runs.get(job_id).map_or(0, |sim| sim.generation + 1);
        let first_after = pending.front().map(|step| step.after);
        sims.runs.insert(
            Arc::clone(job_id),
            Sim {
                pending,
                progression,
                generation,
            },
        );
        if let (Progression::Time, Some(after)) = (progression, first_after) {
            sims.schedule(from, after, job_id, generation);
            drop(sims);
            self.wake_driver();
        }
    }

    /// Applies run `job_id`'s next step at `at`, and schedules the one after. A step the
    /// store cannot keep (503) is put back, to be taken again: by the next poll, the next
    /// advance of a manual clock, or a second later by the system's; the error says so.
    async fn step(&self, job_id: &Arc<str>, at: DateTime<Utc>) -> Result<(), ApiError> {
        let (step, progression, generation) = {
            let mut sims = lock(&self.sims);
            let Some(sim) = sims.runs.get_mut(job_id) else {
                return Ok(());
            };
            let Some(step) = sim.pending.pop_front() else {
                sims.runs.remove(job_id);
                return Ok(());
            };
            (step, sim.progression, sim.generation)
        };
        let Some(body) = self.step_body(job_id, &step, at) else {
            lock(&self.sims).runs.remove(job_id);
            return Ok(());
        };
        let outcome = self
            .submit(body.as_bytes(), Vec::new(), Source::Simulation, Creates::No)
            .await
            .outcome;
        let mut sims = lock(&self.sims);
        let Some(sim) = sims.runs.get_mut(job_id) else {
            return Ok(());
        };
        if sim.generation != generation {
            return Ok(()); // re-planned meanwhile (a cancel): its own timer is set
        }
        if let Err(refusal @ ApiError::StorageUnavailable(_)) = outcome {
            sim.pending.push_front(step);
            if progression == Progression::Time {
                let (from, after) = match self.clock.mode() {
                    ClockMode::System => (Utc::now(), STORE_RETRY),
                    ClockMode::Manual => (at, Duration::ZERO),
                };
                sims.schedule(from, after, job_id, generation);
            }
            return Err(refusal);
        }
        let next_after = sim.pending.front().map(|s| s.after);
        match (outcome, next_after) {
            (Err(refusal), _) => {
                tracing::warn!(job_id = %job_id, reason = %refusal, "a simulated step was refused; the simulation of this run stops");
                sims.runs.remove(job_id);
            }
            (Ok(_), None) => {
                sims.runs.remove(job_id);
            }
            (Ok(_), Some(after)) => {
                if progression == Progression::Time {
                    sims.schedule(at, after, job_id, generation);
                }
            }
        }
        Ok(())
    }

    /// The update a step posts: its state, its result merged into the run's, and the
    /// times a run of that state has. `None` when the run is gone or has ended.
    fn step_body(&self, job_id: &str, step: &Step, at: DateTime<Utc>) -> Option<String> {
        let (facts, result) = self.registry.facts(job_id)?;
        if facts.state.is_some_and(JobState::is_ended) {
            return None;
        }
        let at_text = rfc3339(at);
        let mut body = format!(
            "{{\"jobId\":{},\"state\":\"{}\"",
            Value::from(job_id),
            step.state
        );
        if let Some(step_result) = &step.result {
            let merged = scenario::merged_result(result.as_ref().map(RawJson::as_str), step_result);
            let _ = write!(body, ",\"result\":{merged}");
        }
        let start = facts.start_time.clone();
        let reaches_running = step.state == JobState::Running || step.state.is_ended();
        if start.is_none() && reaches_running {
            let _ = write!(body, ",\"startTime\":\"{at_text}\"");
        }
        if step.state.is_ended() {
            let end = Timestamp::parse(&at_text)?;
            let start_attos = start.map_or(end.attos(), |s| s.attos());
            let duration = (end.attos() - start_attos).max(0) / ATTOS_PER_MILLI;
            let _ = write!(body, ",\"endTime\":\"{at_text}\",\"duration\":{duration}");
        }
        body.push('}');
        Some(body)
    }

    /// A poll of these runs: each simulated run that moves by polls takes its next step.
    pub async fn poll<'a>(&self, job_ids: impl IntoIterator<Item = &'a str>) {
        let polled: Vec<Arc<str>> = {
            let sims = lock(&self.sims);
            if !sims
                .runs
                .values()
                .any(|sim| sim.progression == Progression::Polls)
            {
                return;
            }
            job_ids
                .into_iter()
                .filter_map(|id| sims.runs.get_key_value(id))
                .filter(|(_, sim)| sim.progression == Progression::Polls)
                .map(|(id, _)| Arc::clone(id))
                .collect()
        };
        let now = self.clock.now();
        for job_id in polled {
            // A step the store cannot keep waits for the next poll; this one answers the
            // run as it is.
            let _ = self.step(&job_id, now).await;
        }
    }

    /// A poll of every run.
    pub async fn poll_all(&self) {
        let polled: Vec<Arc<str>> = {
            let sims = lock(&self.sims);
            sims.runs
                .iter()
                .filter(|(_, sim)| sim.progression == Progression::Polls)
                .map(|(id, _)| Arc::clone(id))
                .collect()
        };
        let now = self.clock.now();
        for job_id in polled {
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
                    violations: vec![violation("state", &format!("{state} has ended"))],
                }));
            }
            Some(JobState::Cancelling) => {}
            _ => {
                let body = format!(
                    "{{\"jobId\":{},\"state\":\"cancelling\"}}",
                    Value::from(job_id.as_ref())
                );
                if let Err(refusal) = self
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
                violations: vec![violation("clock", "system")],
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
        while let Some(timer) = self.pop_due(target) {
            self.clock.set(timer.due);
            // The clock stays where the step that could not be stored is due, and the
            // step waits there for the next advance.
            self.step(&timer.job_id, timer.due).await?;
        }
        self.clock.set(target);
        Ok(self.clock.now())
    }

    /// The earliest timer due by `until` that is still current.
    fn pop_due(&self, until: DateTime<Utc>) -> Option<Timer> {
        let mut sims = lock(&self.sims);
        while let Some(Reverse(timer)) = sims.timers.peek() {
            if timer.due > until {
                return None;
            }
            let Reverse(timer) = sims.timers.pop()?;
            let current = sims
                .runs
                .get(&timer.job_id)
                .is_some_and(|sim| sim.generation == timer.generation);
            if current {
                return Some(timer);
            }
        }
        None
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        lock(&self.sims)
            .timers
            .peek()
            .map(|Reverse(timer)| timer.due)
    }

    /// Starts the driver of a system clock, once, on the current runtime.
    fn wake_driver(&self) {
        if self.clock.mode() == ClockMode::System {
            self.wake.notify_one();
        }
    }

    /// Runs the steps of a system clock as they fall due, until `jobs` is gone.
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

    /// What a reset writes, and what it then does in memory once that is durable: every
    /// config and simulated run forgotten, the scenarios of the start again.
    pub async fn reset_staged(self: &Arc<Self>) -> (Vec<Write>, Box<dyn FnOnce() + Send>) {
        let configs = self.configs.lock().await;
        let scenarios = self.scenarios.lock().await;
        let initial = self.initial_scenarios.clone();
        let writes = [
            configs.document(&IndexMap::new()),
            scenarios.document(&initial),
        ]
        .into_iter()
        .flatten()
        .map(|(_, write)| write)
        .collect();
        let jobs = Arc::clone(self);
        let then = move || {
            configs.install(IndexMap::new());
            scenarios.install(initial);
            jobs.forget_simulations();
            lock(&jobs.launches).clear();
        };
        (writes, Box::new(then))
    }

    /// Ends every simulated run: their runs are forgotten.
    pub fn forget_simulations(&self) {
        let mut sims = lock(&self.sims);
        sims.runs.clear();
        sims.timers.clear();
    }

    /// Ends run `job_id`'s simulation, if it has one: the run is forgotten, and a step
    /// must not bring it back.
    pub fn forget_simulation(&self, job_id: &str) {
        lock(&self.sims).runs.remove(job_id);
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        // Lets the driver see that it has nothing left to drive.
        self.wake.notify_one();
    }
}

async fn drive(jobs: Weak<Jobs>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let Some(jobs) = jobs.upgrade() else {
                return;
            };
            let now = jobs.clock.now();
            while let Some(timer) = jobs.pop_due(now) {
                // A step the store cannot keep is due again a second later.
                let _ = jobs.step(&timer.job_id, timer.due).await;
            }
            jobs.next_due()
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

impl Sims {
    /// Sets run `job_id`'s next step due `after` the time `from`. A step that would be
    /// due past the end of time is never set: no clock can get there (a launch refuses
    /// such a plan, and a cancel's step is kept within it).
    fn schedule(
        &mut self,
        from: DateTime<Utc>,
        after: Duration,
        job_id: &Arc<str>,
        generation: u64,
    ) {
        let Some(due) = later(from, after) else {
            tracing::warn!(job_id = %job_id, "a simulated step would be due past the end of time; it never comes");
            self.runs.remove(job_id);
            return;
        };
        self.scheduled += 1;
        self.timers.push(Reverse(Timer {
            due,
            order: self.scheduled,
            job_id: Arc::clone(job_id),
            generation,
        }));
    }
}

/// Fusion's rule for a config id: a letter, then letters, digits, `_` and `-`, at most
/// 63 characters in all.
fn check_config_id(id: &str, field: &str) -> Vec<Violation> {
    let mut chars = id.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && id.len() <= 63;
    if well_formed {
        Vec::new()
    } else {
        vec![violation(
            field,
            &format!(
                "{} is not a config id: a letter, then letters, digits, _ and -, at most 63 in all",
                Value::from(id)
            ),
        )]
    }
}

/// A job config as posted: one JSON object, kept as written (a number too large for a
/// float is kept, as in a status update), its members read one level deep.
struct ConfigBody {
    text: String,
    /// Each member's name and raw value; a name written twice counts with its last.
    members: Vec<(String, String)>,
}

impl ConfigBody {
    fn read(body: &[u8]) -> Result<ConfigBody, ApiError> {
        let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::MalformedJson(format!("the body is not UTF-8: {e}")))?;
        if json::find_too_deep(body).is_some() {
            return Err(ApiError::MalformedJson(
                "the body is nested more than 128 levels deep".to_owned(),
            ));
        }
        let members = json::object_members(text).map_err(|e| {
            ApiError::MalformedJson(format!("the body must be one JSON object: {e}"))
        })?;
        let members = members
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.get().to_owned()))
            .collect();
        Ok(ConfigBody {
            text: text.trim().to_owned(),
            members,
        })
    }

    fn member(&self, name: &str) -> Option<&str> {
        let found = self.members.iter().rev().find(|(n, _)| n == name);
        found.map(|(_, value)| value.as_str())
    }

    fn check_type(&self) -> Vec<Violation> {
        match self.member("type").map(json::as_string) {
            Some(Some(t)) if !t.is_empty() => Vec::new(),
            Some(_) => vec![violation(
                "type",
                "must be a non-empty string, e.g. \"custom_python_job\"",
            )],
            None => vec![violation(
                "type",
                "missing: the job type, e.g. \"custom_python_job\"",
            )],
        }
    }

    /// The config as written, with `"id"` added first when it has none.
    fn with_id(&self, id: &str) -> String {
        if self.member("id").is_some() {
            return self.text.clone();
        }
        let rest = self.text.trim_start_matches('{').trim_start();
        let separator = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"id\":{}{separator}{rest}", Value::from(id))
    }
}

fn violation(field: &str, message: &str) -> Violation {
    Violation {
        field: field.to_owned().into(),
        message: message.to_owned().into(),
    }
}

fn invalid_config(violations: Vec<Violation>) -> ApiError {
    ApiError::ValidationFailed {
        message: format!("the job config is not valid: {}", violations[0].message),
        violations,
    }
}

fn invalid_scenario(violations: Vec<Violation>) -> ApiError {
    let first = violations
        .first()
        .map_or(String::new(), |v| format!("{}: {}", v.field, v.message));
    ApiError::ValidationFailed {
        message: format!("the scenario cannot run: {first}"),
        violations,
    }
}

/// The config an update makes known: its `jobConfig`, when it has an id.
fn config_of(update: &StatusUpdate) -> Option<(String, RawJson)> {
    update
        .facts
        .config_id()
        .map(str::to_owned)
        .zip(update.members.get("jobConfig").cloned())
}

fn render_configs(configs: &Configs) -> String {
    let listed: Vec<&str> = configs.values().map(RawJson::as_str).collect();
    format!("[{}]", listed.join(","))
}

#[allow(clippy::ptr_arg)] // `Saved` renders its value, a `Vec`, through a `fn(&T)`
fn render_scenarios(scenarios: &Vec<Arc<Scenario>>) -> String {
    let views: Vec<ScenarioView> = scenarios.iter().map(|s| s.view()).collect();
    serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_owned())
}

/// A change the store could not keep: 503.
fn not_stored(cause: Unavailable) -> ApiError {
    ApiError::StorageUnavailable(cause.to_string())
}

/// How one update is journaled and counted: owned, so a durable update's witness can
/// take it to the store's thread.
#[derive(Clone)]
struct Journaling {
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    time: DateTime<Utc>,
    source: Source,
}

impl Journaling {
    /// Journals and counts an update with its outcome; gives its journal `seq`.
    fn record(&self, job_id: Option<&Arc<str>>, outcome: Result<&Accepted, &ApiError>) -> u64 {
        match outcome {
            Ok(_) => self.metrics.update_accepted(),
            Err(refusal) => self.metrics.update_refused(refusal.code()),
        }
        self.journal.record(Record {
            time: self.time,
            method: Cow::Borrowed("POST"),
            path: Cow::Borrowed(routes::STATUS),
            job_id: job_id.cloned(),
            status: Some(outcome.map_or_else(|e| e.status().as_u16(), |_| 200)),
            code: outcome.err().map(ApiError::code),
            warnings: outcome.map(|a| a.warnings.clone()).unwrap_or_default(),
            simulated: self.source == Source::Simulation,
            fault: None,
        })
    }
}
