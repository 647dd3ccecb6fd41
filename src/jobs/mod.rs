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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::clock::{Clock, ClockMode, END_OF_TIME, later, past_the_end};
use crate::error::ApiError;
use crate::journal::{Journal, Record};
use crate::metrics::Metrics;
use crate::model::json::{self, RawJson};
use crate::model::time::ATTOS_PER_MILLI;
use crate::model::{JobState, Problem, StatusUpdate, Timestamp, Violation};
use crate::registry::{Accepted, Registry};
use crate::store::{Store, Write};
pub use scenario::{Progression, Scenario, ScenarioView, Step};

/// A launched run: its jobId and JobStatus.
pub type Launched = (Arc<str>, Box<RawValue>);

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
    configs: Mutex<IndexMap<String, RawJson>>,
    scenarios: RwLock<Vec<Arc<Scenario>>>,
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
    /// Where scenarios and configs are saved with `--data-dir`.
    store: Option<Arc<Store>>,
}

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
            configs: Mutex::new(IndexMap::new()),
            scenarios: RwLock::new(scenarios.clone()),
            initial_scenarios: scenarios,
            sims: Mutex::new(Sims::default()),
            launches: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            driver_started: AtomicBool::new(false),
            advancing: tokio::sync::Mutex::new(()),
            store: None,
        }
    }

    /// Saves scenarios and configs to `store` on every change, starting from what it
    /// saved before (which wins over the scenarios given at start; a reset brings those
    /// back).
    pub fn persist_to(
        &mut self,
        store: Arc<Store>,
        scenarios: Option<&str>,
        configs: Option<&str>,
    ) -> Result<(), String> {
        if let Some(saved) = scenarios {
            let saved = scenario::parse_list(saved)
                .map_err(|e| format!("the saved scenarios cannot be read: {e}"))?;
            *write(&self.scenarios) = saved.into_iter().map(Arc::new).collect();
        }
        if let Some(saved) = configs {
            let saved: Vec<&RawValue> = serde_json::from_str(saved)
                .map_err(|e| format!("the saved configs cannot be read: {e}"))?;
            let mut configs = lock(&self.configs);
            for config in saved {
                let id = ConfigBody::read(config.get().as_bytes())
                    .ok()
                    .and_then(|c| {
                        c.member("id")
                            .and_then(json::as_string)
                            .map(|id| id.into_owned())
                    })
                    .ok_or_else(|| format!("a saved config has no id: {}", config.get()))?;
                configs.insert(id, RawJson::whole(Arc::from(config.get())));
            }
        }
        self.store = Some(store);
        Ok(())
    }

    fn save_scenarios(&self, scenarios: &[Arc<Scenario>]) {
        if let Some(store) = &self.store {
            let views: Vec<ScenarioView> = scenarios.iter().map(|s| s.view()).collect();
            let json = serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_owned());
            store.write(Write::Document {
                name: "scenarios",
                json,
            });
        }
    }

    fn save_configs(&self, configs: &IndexMap<String, RawJson>) {
        if let Some(store) = &self.store {
            let listed: Vec<&str> = configs.values().map(RawJson::as_str).collect();
            store.write(Write::Document {
                name: "configs",
                json: format!("[{}]", listed.join(",")),
            });
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Parses, judges and applies one status update: the path of every update. Gives the
    /// jobId when one could be read, and the outcome.
    ///
    /// The update is journaled (as a POST of the status route) and counted here, an
    /// accepted one before a waiter or a subscriber can hear of it: a test that has
    /// seen a run change always finds the request that changed it in the journal.
    pub fn submit(&self, body: &[u8], mut problems: Vec<Problem>, source: Source) -> Submitted {
        let time = self.clock.now();
        let journaled = std::cell::Cell::new(0);
        let journal = |job_id: Option<&Arc<str>>, outcome: Result<&Accepted, &ApiError>| {
            match outcome {
                Ok(_) => self.metrics.update_accepted(),
                Err(refusal) => self.metrics.update_refused(refusal.code()),
            }
            let seq = self.journal.record(Record {
                time,
                method: Cow::Borrowed("POST"),
                path: Cow::Borrowed(crate::api::fusion::STATUS_PATH),
                job_id: job_id.cloned(),
                status: Some(outcome.map_or_else(|e| e.status().as_u16(), |_| 200)),
                code: outcome.err().map(ApiError::code),
                warnings: outcome.map(|a| a.warnings.clone()).unwrap_or_default(),
                simulated: source == Source::Simulation,
                fault: None,
            });
            journaled.set(seq);
        };
        let update = match StatusUpdate::parse(body) {
            Ok((update, form)) => {
                problems.extend(form);
                update
            }
            Err(malformed) => {
                let refusal = ApiError::MalformedJson(malformed.0);
                journal(None, Err(&refusal));
                return Submitted {
                    job_id: None,
                    outcome: Err(refusal),
                    journal_seq: journaled.get(),
                };
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
            journal(named.as_ref(), Err(&refusal));
            return Submitted {
                job_id: named,
                outcome: Err(refusal),
                journal_seq: journaled.get(),
            };
        };
        let config = update
            .facts
            .config_id()
            .map(str::to_owned)
            .zip(update.members.get("jobConfig").cloned());
        let witnessed = std::cell::Cell::new(false);
        let witness = |accepted: &Accepted| {
            journal(Some(&job_id), Ok(accepted));
            witnessed.set(true);
        };
        let outcome =
            self.registry
                .apply_witnessed(Arc::clone(&job_id), update, problems, &witness);
        // A refusal, or a repeat (which adds no history entry), was not witnessed.
        if !witnessed.get() {
            journal(Some(&job_id), outcome.as_ref());
        }
        if let (Ok(_), Some((id, config))) = (&outcome, config) {
            self.remember_config(id, &config);
        }
        Submitted {
            job_id: Some(job_id),
            outcome,
            journal_seq: journaled.get(),
        }
    }

    /// Counts an update refused before it could be read (a body too large to read).
    pub fn count_refusal(&self, refusal: &ApiError) {
        self.metrics.update_refused(refusal.code());
    }

    /// Keeps a config seen in a run, unless it is already known as it is.
    fn remember_config(&self, id: String, config: &RawJson) {
        let mut configs = lock(&self.configs);
        if configs
            .get(&id)
            .is_some_and(|known| known.as_str() == config.as_str())
        {
            return;
        }
        configs.insert(id, config.detached());
        self.save_configs(&configs);
    }

    // --- Configs -------------------------------------------------------------------

    /// Creates or replaces config `id`; `true` when it created it. The body's `id`, when
    /// given, must be `id`; it is added when missing.
    pub fn put_config(
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
        let mut configs = lock(&self.configs);
        let created = configs.insert(id.to_owned(), raw).is_none();
        self.save_configs(&configs);
        drop(configs);
        Ok((created, json::raw_value(text)))
    }

    pub fn config(&self, id: &str) -> Option<Box<RawValue>> {
        lock(&self.configs).get(id).map(RawJson::to_raw_value)
    }

    pub fn configs(&self) -> Vec<Box<RawValue>> {
        lock(&self.configs)
            .values()
            .map(RawJson::to_raw_value)
            .collect()
    }

    pub fn delete_config(&self, id: &str) -> bool {
        let mut configs = lock(&self.configs);
        let removed = configs.shift_remove(id).is_some();
        self.save_configs(&configs);
        removed
    }

    // --- Scenarios -----------------------------------------------------------------

    pub fn scenarios(&self) -> Vec<ScenarioView> {
        read(&self.scenarios).iter().map(|s| s.view()).collect()
    }

    pub fn scenario(&self, pattern: &str) -> Option<ScenarioView> {
        read(&self.scenarios)
            .iter()
            .find(|s| s.pattern == pattern)
            .map(|s| s.view())
    }

    /// Adds or replaces the scenario for `pattern` (in place, keeping its turn); `true`
    /// when it added it.
    pub fn put_scenario(
        &self,
        pattern: &str,
        body: &Value,
    ) -> Result<(bool, ScenarioView), ApiError> {
        let scenario = Scenario::parse(body, Some(pattern)).map_err(invalid_scenario)?;
        let late = scenario.past_the_end(None, self.clock.now());
        if !late.is_empty() {
            return Err(invalid_scenario(late));
        }
        let view = scenario.view();
        let mut scenarios = write(&self.scenarios);
        let created = match scenarios.iter_mut().find(|s| s.pattern == pattern) {
            Some(existing) => {
                *existing = Arc::new(scenario);
                false
            }
            None => {
                scenarios.push(Arc::new(scenario));
                true
            }
        };
        self.save_scenarios(&scenarios);
        Ok((created, view))
    }

    pub fn delete_scenario(&self, pattern: &str) -> bool {
        let mut scenarios = write(&self.scenarios);
        let before = scenarios.len();
        scenarios.retain(|s| s.pattern != pattern);
        self.save_scenarios(&scenarios);
        scenarios.len() < before
    }

    /// The scenario a run of config `id` goes through: an exact match, else the first
    /// wildcard that fits, in the order they were added, else the default.
    fn scenario_for(&self, id: &str) -> Arc<Scenario> {
        let scenarios = read(&self.scenarios);
        let exact = scenarios.iter().find(|s| s.is_exact() && s.pattern == id);
        let found = exact.or_else(|| scenarios.iter().find(|s| !s.is_exact() && s.fits(id)));
        found
            .cloned()
            .unwrap_or_else(|| Arc::new(Scenario::default_for_all()))
    }

    // --- Runs ----------------------------------------------------------------------

    /// Launches a run of a config given as a JSON body: `POST /job-launcher/launcher`.
    pub fn launch_posted(
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
    }

    /// Launches a run of a known config: `POST /api/spark/jobs/{id}`.
    pub fn launch_known(&self, id: &str) -> Option<Result<Launched, ApiError>> {
        let config = lock(&self.configs).get(id).cloned()?;
        Some(self.launch(&config))
    }

    fn launch(&self, config: &RawJson) -> Result<Launched, ApiError> {
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
        self.submit(body.as_bytes(), Vec::new(), Source::Simulation)
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

    /// Applies run `job_id`'s next step at `at`, and schedules the one after.
    fn step(&self, job_id: &Arc<str>, at: DateTime<Utc>) {
        let (step, progression, generation) = {
            let mut sims = lock(&self.sims);
            let Some(sim) = sims.runs.get_mut(job_id) else {
                return;
            };
            let Some(step) = sim.pending.pop_front() else {
                sims.runs.remove(job_id);
                return;
            };
            (step, sim.progression, sim.generation)
        };
        let Some(body) = self.step_body(job_id, &step, at) else {
            lock(&self.sims).runs.remove(job_id);
            return;
        };
        let outcome = self
            .submit(body.as_bytes(), Vec::new(), Source::Simulation)
            .outcome;
        let mut sims = lock(&self.sims);
        let Some(sim) = sims.runs.get(job_id) else {
            return;
        };
        if sim.generation != generation {
            return; // re-planned meanwhile (a cancel): its own timer is set
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
    }

    /// The update a step posts: its state, its result merged into the run's, and the
    /// times a run of that state has. `None` when the run is gone or has ended.
    fn step_body(&self, job_id: &str, step: &Step, at: DateTime<Utc>) -> Option<String> {
        let (facts, result) = self.registry.facts(job_id)?;
        if facts.state.is_some_and(JobState::is_ended) {
            return None;
        }
        let at_text = at.to_rfc3339_opts(SecondsFormat::Millis, true);
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
    pub fn poll<'a>(&self, job_ids: impl IntoIterator<Item = &'a str>) {
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
            self.step(&job_id, now);
        }
    }

    /// A poll of every run.
    pub fn poll_all(&self) {
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
            self.step(&job_id, now);
        }
    }

    /// Cancels run `job_id`: `cancelling` now, `cancelled` 100 ms of the clock later.
    /// Gives its status; `None` when there is no such run.
    pub fn cancel(&self, job_id: &Arc<str>) -> Option<Result<Box<RawValue>, ApiError>> {
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
                    .submit(body.as_bytes(), Vec::new(), Source::Simulation)
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
            self.step(&timer.job_id, timer.due);
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

    /// Forgets every config and simulated run; the scenarios are those of the start again.
    pub fn reset(&self) {
        let mut configs = lock(&self.configs);
        configs.clear();
        self.save_configs(&configs);
        drop(configs);
        lock(&self.launches).clear();
        let mut scenarios = write(&self.scenarios);
        *scenarios = self.initial_scenarios.clone();
        self.save_scenarios(&scenarios);
        drop(scenarios);
        let mut sims = lock(&self.sims);
        sims.runs.clear();
        sims.timers.clear();
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
                jobs.step(&timer.job_id, timer.due);
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
