//! Scenarios: the steps a simulated run of a matching config goes through, how one is
//! read and checked, and the list of them a run's scenario is chosen from.
//!
//! A scenario gives one list of `steps` for every run, or, with `runs`, a list per run:
//! the first run of a config follows the first, the second run the second, and every
//! run past the end the last (say, a nightly job that fails on its second night). One
//! that could not run is refused when it is given, never at run time.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::clock::{later, past_the_end};
use crate::error::ApiError;
use crate::model::json;
use crate::model::{JobState, Violation};
use crate::store::{Saved, Store, Write};

/// The scenarios runs are matched against, in the order they were added; with
/// `--data-dir`, saved as one document, a change the store cannot keep not made.
pub struct Scenarios {
    list: Saved<Vec<Arc<Scenario>>>,
    /// The scenarios of `--scenarios`, which a reset brings back.
    initial: Vec<Arc<Scenario>>,
}

impl Scenarios {
    /// `initial` (those of `--scenarios`), in memory only.
    pub fn new(initial: Vec<Scenario>) -> Self {
        let initial: Vec<Arc<Scenario>> = initial.into_iter().map(Arc::new).collect();
        Scenarios {
            list: Saved::new(initial.clone(), render),
            initial,
        }
    }

    /// Scenarios saved to `store` on every change, starting with those it saved before,
    /// which win over `initial` (a reset brings `initial` back).
    pub fn persisted(
        initial: Vec<Scenario>,
        store: Arc<Store>,
        saved: Option<&str>,
    ) -> Result<Self, String> {
        let initial: Vec<Arc<Scenario>> = initial.into_iter().map(Arc::new).collect();
        let list = match saved {
            Some(saved) => parse_list(saved)
                .map_err(|e| format!("the saved scenarios cannot be read: {e}"))?
                .into_iter()
                .map(Arc::new)
                .collect(),
            None => initial.clone(),
        };
        Ok(Scenarios {
            list: Saved::persisted(list, store, "scenarios", render),
            initial,
        })
    }

    /// Every scenario, in the order they are tried.
    pub fn list(&self) -> Vec<ScenarioView> {
        self.list.read().iter().map(|s| s.view()).collect()
    }

    pub fn get(&self, pattern: &str) -> Option<ScenarioView> {
        self.list
            .read()
            .iter()
            .find(|s| s.pattern == pattern)
            .map(|s| s.view())
    }

    /// Adds or replaces the scenario for `pattern` (in place, keeping its turn), given
    /// at `now`; `true` when it added it.
    pub async fn put(
        &self,
        pattern: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<(bool, ScenarioView), ApiError> {
        let scenario = Scenario::parse(body, Some(pattern)).map_err(invalid)?;
        let late = scenario.past_the_end(None, now);
        if !late.is_empty() {
            return Err(invalid(late));
        }
        let scenario = Arc::new(scenario);
        let view = scenario.view();
        let pattern = pattern.to_owned();
        let created = self
            .list
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
            .map_err(|cause| ApiError::StorageUnavailable(cause.to_string()))?;
        Ok((created, view))
    }

    /// Forgets the scenario for `pattern`; `false` when there was none.
    pub async fn delete(&self, pattern: &str) -> Result<bool, ApiError> {
        let pattern = pattern.to_owned();
        self.list
            .change(move |scenarios| {
                let before = scenarios.len();
                scenarios.retain(|s| s.pattern != pattern);
                scenarios.len() < before
            })
            .await
            .map_err(|cause| ApiError::StorageUnavailable(cause.to_string()))
    }

    /// The scenario a run of config `id` goes through: an exact match, else the first
    /// wildcard that fits, in the order they were added, else the default.
    pub fn for_config(&self, id: &str) -> Arc<Scenario> {
        let scenarios = self.list.read();
        let exact = scenarios.iter().find(|s| s.is_exact() && s.pattern == id);
        let found = exact.or_else(|| scenarios.iter().find(|s| !s.is_exact() && s.fits(id)));
        found
            .cloned()
            .unwrap_or_else(|| Arc::new(Scenario::default_for_all()))
    }

    /// What a reset writes, and what it then does once that is durable: the scenarios of
    /// the start again.
    pub async fn reset_staged(&self) -> (Option<Write>, Box<dyn FnOnce() + Send>) {
        let lock = self.list.lock().await;
        let initial = self.initial.clone();
        let write = lock.document(&initial).map(|(_, write)| write);
        (write, Box::new(move || lock.install(initial)))
    }
}

fn invalid(violations: Vec<Violation>) -> ApiError {
    ApiError::invalid("the scenario cannot run", violations)
}

#[allow(clippy::ptr_arg)] // `Saved` renders its value, a `Vec`, through a `fn(&T)`
fn render(scenarios: &Vec<Arc<Scenario>>) -> String {
    let views: Vec<ScenarioView> = scenarios.iter().map(|s| s.view()).collect();
    serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_owned())
}

/// What a simulated run goes through after it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// A config id, where `*` stands for any run of characters.
    pub pattern: String,
    /// The steps of the first run, the second, ...; never empty. `steps` is one list.
    pub runs: Vec<Vec<Step>>,
    /// Whether it was given as `runs` (else as `steps`), to show it as it was given.
    pub per_run: bool,
    pub progression: Progression,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub state: JobState,
    /// The wait since the previous step (for the first, since the launch).
    pub after: Duration,
    /// Merged into the run's `result`.
    pub result: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Progression {
    /// Each step comes `after` the one before, by the clock.
    Time,
    /// Each poll of the run applies its next step.
    Polls,
}

/// A scenario as the API shows it; also the shape it is given in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScenarioView {
    #[serde(rename = "match")]
    pub pattern: String,
    /// The steps of every run; absent when `runs` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
    /// The steps of the first run, the second, ...; runs past the end follow the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunPlanView>>,
    pub progression: Progression,
}

/// The steps of one run of a `runs` scenario.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunPlanView {
    pub steps: Vec<StepView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub state: JobState,
    /// e.g. `200ms`, `2s`.
    pub after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Map<String, Value>>,
}

/// The state a launched run starts in, before its scenario's first step.
pub const LAUNCH_STATE: JobState = JobState::Starting;

impl Scenario {
    /// Section 7's default: `starting`, `running` after 100 ms, `finishing` after 1 s,
    /// `finished` after 100 ms.
    pub fn default_for_all() -> Scenario {
        let step = |state, millis| Step {
            state,
            after: Duration::from_millis(millis),
            result: None,
        };
        Scenario {
            pattern: "*".to_owned(),
            runs: vec![vec![
                step(JobState::Running, 100),
                step(JobState::Finishing, 1000),
                step(JobState::Finished, 100),
            ]],
            per_run: false,
            progression: Progression::Time,
        }
    }

    /// Reads and checks a scenario; every problem is listed, each naming its field.
    /// `pattern` is the `match` the path gives, which a body's `match` must equal.
    pub fn parse(value: &Value, pattern: Option<&str>) -> Result<Scenario, Vec<Violation>> {
        let mut problems = Problems::default();
        let Some(object) = value.as_object() else {
            problems.add(
                "body",
                "a scenario is a JSON object: {\"match\", \"steps\", \"progression\"}",
            );
            return Err(problems.0);
        };
        for key in object.keys() {
            if !matches!(key.as_str(), "match" | "steps" | "runs" | "progression") {
                problems.add(
                    key,
                    format!(
                        "\"{key}\" is not a scenario field; use match, steps (or runs), progression"
                    ),
                );
            }
        }
        // A member that is null counts as absent, as in a status update.
        let given = |name: &str| object.get(name).filter(|v| !v.is_null());
        let pattern = match (given("match"), pattern) {
            (None, Some(path)) => path.to_owned(),
            (Some(Value::String(given)), Some(path)) if given != path => {
                problems.add(
                    "match",
                    format!("\"{given}\" differs from the path's \"{path}\""),
                );
                path.to_owned()
            }
            (Some(Value::String(given)), _) if !given.is_empty() => given.clone(),
            (None, None) => {
                problems.add(
                    "match",
                    "missing: a config id, * standing for any characters",
                );
                String::new()
            }
            _ => {
                problems.add(
                    "match",
                    "must be a non-empty string: a config id, * standing for any characters",
                );
                String::new()
            }
        };
        let progression = match given("progression") {
            None => Progression::Time,
            Some(Value::String(p)) if p == "time" => Progression::Time,
            Some(Value::String(p)) if p == "polls" => Progression::Polls,
            Some(_) => {
                problems.add("progression", "must be \"time\" or \"polls\"");
                Progression::Time
            }
        };
        let (runs, per_run) = match (given("steps"), given("runs")) {
            (Some(steps), None) => (
                vec![parse_steps("steps", Some(steps), &mut problems)],
                false,
            ),
            (None, Some(Value::Array(runs))) if !runs.is_empty() => {
                let runs = runs
                    .iter()
                    .enumerate()
                    .map(|(i, run)| {
                        let field = format!("runs[{i}].steps");
                        match run {
                            Value::Object(run) => {
                                for key in run.keys().filter(|k| *k != "steps") {
                                    problems.add(
                                        &format!("runs[{i}].{key}"),
                                        format!("\"{key}\" is not a field of a run; use steps"),
                                    );
                                }
                                parse_steps(&field, run.get("steps"), &mut problems)
                            }
                            _ => {
                                problems.add(&format!("runs[{i}]"), "a run is {\"steps\": [...]}");
                                Vec::new()
                            }
                        }
                    })
                    .collect();
                (runs, true)
            }
            (None, Some(_)) => {
                problems.add(
                    "runs",
                    "must be a non-empty array of {\"steps\": [...]}, one per run",
                );
                (Vec::new(), true)
            }
            (Some(_), Some(_)) => {
                problems.add(
                    "runs",
                    "give steps (the same for every run) or runs (per run), not both",
                );
                (Vec::new(), true)
            }
            (None, None) => {
                problems.add(
                    "steps",
                    "a scenario needs at least one step; the last must end the run",
                );
                (Vec::new(), false)
            }
        };
        if problems.0.is_empty() {
            Ok(Scenario {
                pattern,
                runs,
                per_run,
                progression,
            })
        } else {
            Err(problems.0)
        }
    }

    /// The steps of the `nth` run (from 1) of a matching config.
    pub fn steps_for(&self, nth: u64) -> &[Step] {
        let index = usize::try_from(nth.saturating_sub(1)).unwrap_or(usize::MAX);
        let last = self.runs.len().saturating_sub(1);
        self.runs.get(index.min(last)).map_or(&[], Vec::as_slice)
    }

    /// The steps that would be due past the end of time (the latest time the mock can
    /// hold) for a run started at `from`: of the `nth` run's plan (from 1), or of every
    /// plan when `nth` is `None`. Each is a violation naming its `after`, the first of
    /// each plan only; none for a scenario that moves by polls, which has no due times.
    /// The clock never goes back, so what passes the end from `from` passes it from any
    /// later start too.
    pub fn past_the_end(&self, nth: Option<u64>, from: DateTime<Utc>) -> Vec<Violation> {
        if self.progression == Progression::Polls {
            return Vec::new();
        }
        let plans: Vec<usize> = match nth {
            Some(nth) => {
                let index = usize::try_from(nth.saturating_sub(1)).unwrap_or(usize::MAX);
                vec![index.min(self.runs.len().saturating_sub(1))]
            }
            None => (0..self.runs.len()).collect(),
        };
        let mut late = Vec::new();
        for plan in plans {
            let Some(steps) = self.runs.get(plan) else {
                continue;
            };
            let mut due = Some(from);
            let mut since_launch = Duration::ZERO;
            for (i, step) in steps.iter().enumerate() {
                since_launch = since_launch.saturating_add(step.after);
                due = due.and_then(|due| later(due, step.after));
                if due.is_none() {
                    let field = if self.per_run {
                        format!("runs[{plan}].steps[{i}].after")
                    } else {
                        format!("steps[{i}].after")
                    };
                    let what = format!(
                        "a step due {} after the launch",
                        crate::duration::format(since_launch)
                    );
                    late.push(past_the_end(&field, &what, from));
                    break;
                }
            }
        }
        late
    }

    /// Whether this scenario's `match` fits config `id`.
    pub fn fits(&self, id: &str) -> bool {
        glob_match(&self.pattern, id)
    }

    pub fn is_exact(&self) -> bool {
        !self.pattern.contains('*')
    }

    pub fn view(&self) -> ScenarioView {
        let view = |steps: &Vec<Step>| -> Vec<StepView> {
            steps
                .iter()
                .map(|step| StepView {
                    state: step.state,
                    after: crate::duration::format(step.after),
                    result: step.result.clone(),
                })
                .collect()
        };
        let (steps, runs) = if self.per_run {
            let runs = self
                .runs
                .iter()
                .map(|steps| RunPlanView { steps: view(steps) });
            (None, Some(runs.collect()))
        } else {
            (self.runs.first().map(view), None)
        };
        ScenarioView {
            pattern: self.pattern.clone(),
            steps,
            runs,
            progression: self.progression,
        }
    }
}

#[derive(Default)]
struct Problems(Vec<Violation>);

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(Violation {
            field: field.to_owned().into(),
            message: message.into().into(),
        });
    }
}

/// The list of steps at `field`, checked as a whole; empty when it cannot be read.
fn parse_steps(field: &str, value: Option<&Value>, problems: &mut Problems) -> Vec<Step> {
    let steps = match value {
        Some(Value::Array(steps)) if !steps.is_empty() => steps
            .iter()
            .enumerate()
            .filter_map(|(i, step)| parse_step(field, i, step, problems))
            .collect(),
        Some(Value::Array(_)) | None => {
            problems.add(field, "needs at least one step; the last must end the run");
            Vec::new()
        }
        Some(_) => {
            problems.add(
                field,
                "must be an array of {\"state\", \"after\", \"result\"}",
            );
            Vec::new()
        }
    };
    check_sequence(field, &steps, problems);
    steps.into_iter().map(|(_, step)| step).collect()
}

/// One step, or `None` (with its problems noted) when it cannot be read.
fn parse_step(
    list: &str,
    i: usize,
    value: &Value,
    problems: &mut Problems,
) -> Option<(usize, Step)> {
    let field = |name: &str| format!("{list}[{i}].{name}");
    let Some(object) = value.as_object() else {
        problems.add(
            &format!("{list}[{i}]"),
            "a step is {\"state\", \"after\", \"result\"}",
        );
        return None;
    };
    let before = problems.0.len();
    for key in object.keys() {
        if !matches!(key.as_str(), "state" | "after" | "result") {
            problems.add(
                &field(key),
                format!("\"{key}\" is not a step field; use state, after, result"),
            );
        }
    }
    let state = match object.get("state") {
        Some(Value::String(name)) => JobState::from_name(name).or_else(|| {
            problems.add(
                &field("state"),
                format!("\"{name}\" is not a state; use {}", JobState::NAMES),
            );
            None
        }),
        _ => {
            problems.add(
                &field("state"),
                format!("missing or not a string; use {}", JobState::NAMES),
            );
            None
        }
    };
    let after = match object.get("after") {
        None | Some(Value::Null) => Some(Duration::ZERO),
        Some(Value::String(text)) => crate::duration::parse(text).or_else(|| {
            problems.add(
                &field("after"),
                format!("\"{text}\" is not a duration; write e.g. 200ms, 2s, 10m"),
            );
            None
        }),
        Some(_) => {
            problems.add(
                &field("after"),
                "must be a duration such as \"200ms\" or \"2s\"",
            );
            None
        }
    };
    let result = match object.get("result") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(result)) => Some(Some(result.clone())),
        Some(_) => {
            problems.add(
                &field("result"),
                "must be an object, merged into the run's result",
            );
            None
        }
    };
    if problems.0.len() > before {
        return None;
    }
    Some((
        i,
        Step {
            state: state?,
            after: after?,
            result: result?,
        },
    ))
}

/// The steps, from a launched run's first state, must follow the transition table, and
/// the last must end the run.
fn check_sequence(list: &str, steps: &[(usize, Step)], problems: &mut Problems) {
    let mut previous = LAUNCH_STATE;
    for (i, step) in steps {
        if !previous.may_go_to(step.state) {
            problems.add(
                &format!("{list}[{i}].state"),
                format!(
                    "{previous} -> {} is not allowed by the transition table",
                    step.state
                ),
            );
        }
        previous = step.state;
    }
    if let Some((i, last)) = steps.last()
        && !last.state.is_ended()
    {
        problems.add(
            &format!("{list}[{i}].state"),
            format!(
                "the last step must end the run (finished, cancelled, error or skipped), not {}",
                last.state
            ),
        );
    }
}

/// Reads `--scenarios FILE`: a JSON array of scenarios, each checked as if it were PUT.
pub fn load_file(path: &std::path::Path) -> Result<Vec<Scenario>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the scenarios file {}: {e}", path.display()))?;
    let scenarios =
        parse_list(&text).map_err(|e| format!("the scenarios file {}: {e}", path.display()))?;
    // Either clock starts at the wall clock's time.
    let now = Utc::now();
    for scenario in &scenarios {
        if let Some(late) = scenario.past_the_end(None, now).first() {
            return Err(format!(
                "the scenarios file {}: scenario {} cannot run: {}: {}",
                path.display(),
                scenario.pattern,
                late.field,
                late.message
            ));
        }
    }
    Ok(scenarios)
}

/// Reads a JSON array of scenarios, each checked as if it were PUT; a later scenario
/// with the same `match` replaces an earlier one, in its turn.
pub fn parse_list(text: &str) -> Result<Vec<Scenario>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("must hold a JSON array of scenarios".to_owned());
    };
    let mut scenarios: Vec<Scenario> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let scenario = Scenario::parse(item, None).map_err(|problems| {
            let listed: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            format!("scenario {i} cannot run: {}", listed.join("; "))
        })?;
        match scenarios.iter_mut().find(|s| s.pattern == scenario.pattern) {
            Some(earlier) => *earlier = scenario,
            None => scenarios.push(scenario),
        }
    }
    Ok(scenarios)
}

/// `pattern` fits `text`, `*` standing for any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A `result` object with a step's members merged in: the run's current members as they
/// are (raw, as posted), those of the step replacing any of the same name.
pub struct MergedResult<'a> {
    current: Vec<(Cow<'a, str>, &'a RawValue)>,
    step: &'a Map<String, Value>,
}

impl<'a> MergedResult<'a> {
    /// `current`, the run's `result` as posted (if it has one that is an object), with
    /// `step`'s members merged in.
    pub fn new(current: Option<&'a str>, step: &'a Map<String, Value>) -> Self {
        let current = current
            .and_then(|raw| json::object_members(raw).ok())
            .unwrap_or_default();
        MergedResult { current, step }
    }
}

impl Serialize for MergedResult<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kept = self
            .current
            .iter()
            .filter(|(name, _)| !self.step.contains_key(name.as_ref()));
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in kept {
            map.serialize_entry(name, value)?;
        }
        for (name, value) in self.step {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Vec<String> {
        match Scenario::parse(&value, None) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| p.field.to_string()).collect(),
        }
    }

    #[test]
    fn a_good_scenario_reads() {
        let scenario = Scenario::parse(
            &json!({"match": "nightly-*", "progression": "polls", "steps": [
                {"state": "running", "after": "200ms"},
                {"state": "error", "after": "2s", "result": {"exception": {"message": "lost"}}}
            ]}),
            None,
        )
        .unwrap();
        assert_eq!(scenario.steps_for(1).len(), 2);
        assert_eq!(scenario.steps_for(9)[1].after, Duration::from_secs(2));
        assert_eq!(scenario.progression, Progression::Polls);
        assert!(scenario.fits("nightly-aggregation") && !scenario.fits("daily"));
    }

    #[test]
    fn each_way_a_scenario_can_be_wrong_is_named() {
        assert_eq!(fields(json!([])), ["body"]);
        assert_eq!(fields(json!({"steps": [{"state": "finished"}]})), ["match"]);
        assert_eq!(fields(json!({"match": "a", "runs": []})), ["runs"]);
        assert_eq!(
            fields(json!({"match": "a", "runs": [{"steps": []}]})),
            ["runs[0].steps"]
        );
        assert_eq!(
            fields(
                json!({"match": "a", "runs": [{"steps": [{"state": "finished"}]}, {"steps": [{"state": "running"}]}]})
            ),
            ["runs[1].steps[0].state"]
        );
        assert_eq!(
            fields(
                json!({"match": "a", "runs": [{"steps": [{"state": "finished"}], "after": "1s"}]})
            ),
            ["runs[0].after"]
        );
        assert_eq!(
            fields(
                json!({"match": "a", "steps": [{"state": "finished"}], "runs": [{"steps": [{"state": "finished"}]}]})
            ),
            ["runs"]
        );
        assert_eq!(fields(json!({"match": "a", "steps": []})), ["steps"]);
        assert_eq!(fields(json!({"match": "a"})), ["steps"]);
        assert_eq!(fields(json!({"match": "a", "steps": {}})), ["steps"]);
        assert_eq!(
            fields(json!({"match": "a", "steps": [{"state": "done"}]})),
            ["steps[0].state"]
        );
        assert_eq!(
            fields(json!({"match": "a", "steps": [{"state": "running"}]})),
            ["steps[0].state"]
        );
        assert_eq!(
            fields(json!({"match": "a", "steps": [{"state": "finished"}, {"state": "running"}]})),
            ["steps[1].state", "steps[1].state"]
        );
        assert_eq!(
            fields(json!({"match": "a", "steps": [{"state": "idle"}, {"state": "finished"}]})),
            ["steps[0].state"]
        );
        assert_eq!(
            fields(json!({"match": "a", "steps": [{"state": "finished", "after": "soon"}]})),
            ["steps[0].after"]
        );
        assert_eq!(
            fields(json!({"match": "a", "steps": [{"state": "finished", "result": 3}]})),
            ["steps[0].result"]
        );
        assert_eq!(
            fields(json!({"match": "a", "steps": [{"state": "finished", "wait": "1s"}]})),
            ["steps[0].wait"]
        );
        assert_eq!(
            fields(json!({"match": "a", "progression": "fast", "steps": [{"state": "finished"}]})),
            ["progression"]
        );
        assert_eq!(
            fields(json!({"match": "a", "extra": 1, "steps": [{"state": "skipped"}]})),
            ["extra"]
        );
        let mismatch = Scenario::parse(
            &json!({"match": "a", "steps": [{"state": "finished"}]}),
            Some("b"),
        );
        assert_eq!(mismatch.unwrap_err()[0].field, "match".into());
    }

    #[test]
    fn each_run_follows_its_own_steps_and_later_runs_the_last() {
        let scenario = Scenario::parse(
            &json!({"match": "nightly", "runs": [
                {"steps": [{"state": "finished"}]},
                {"steps": [{"state": "running"}, {"state": "error"}]},
                {"steps": [{"state": "skipped"}]}
            ]}),
            None,
        )
        .unwrap();
        let last_state = |nth| scenario.steps_for(nth).last().map(|s| s.state);
        assert_eq!(last_state(1), Some(JobState::Finished));
        assert_eq!(last_state(2), Some(JobState::Error));
        assert_eq!(last_state(3), Some(JobState::Skipped));
        assert_eq!(last_state(30), Some(JobState::Skipped));
        let view = serde_json::to_value(scenario.view()).unwrap();
        assert!(view.get("steps").is_none());
        assert_eq!(view["runs"][1]["steps"][1]["state"], "error");
    }

    #[test]
    fn globs_match_as_written() {
        for (pattern, text, fits) in [
            ("*", "anything", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ab", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob_match(pattern, text), fits, "{pattern} {text}");
        }
    }

    #[test]
    fn results_merge_member_by_member() {
        let step = json!({"docsWritten": 5, "jobRunId": "x"});
        let merged = |current| {
            serde_json::to_string(&MergedResult::new(current, step.as_object().unwrap())).unwrap()
        };
        assert_eq!(
            merged(Some(r#"{"jobRunId":"a","big":123456789012345678901234}"#)),
            r#"{"big":123456789012345678901234,"docsWritten":5,"jobRunId":"x"}"#
        );
        assert_eq!(merged(None), r#"{"docsWritten":5,"jobRunId":"x"}"#);
        assert_eq!(
            merged(Some(r#"{"a\"b" : [1, 2]}"#)),
            r#"{"a\"b":[1, 2],"docsWritten":5,"jobRunId":"x"}"#,
            "names are escaped, values kept as posted"
        );
    }
}
