//! Verification in one call (`POST /_mock/verify`): expectations on what clients did in a
//! world, checked against its registry and journal, every failure said in words.
//!
//! `{"runs": {"<jobId>": {"states": [...], "updates": N}}, "refused": N, "warnings": N}`,
//! every key optional (the contract, "Verification"):
//! - `states`: the states a run's accepted updates went through, oldest first, a state
//!   repeated by consecutive updates said once;
//! - `updates`: how many updates the run accepted (exact repeats aside);
//! - `refused`: journal entries of the Fusion routes answered with an error (or dropped
//!   by a fault);
//! - `warnings`: journal entries of accepted status updates that carried a warning.
//!
//! A check that needs history or journal entries the bounds dropped fails, and says so:
//! it cannot be told. This module reads; it changes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::journal::{Journal, JournalFilter};
use crate::model::{JobState, Violation};
use crate::registry::Registry;
use crate::routes;

/// What a test expects, as read from its body.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    runs: BTreeMap<String, RunExpectation>,
    refused: Option<u64>,
    warnings: Option<u64>,
}

#[derive(Debug, Default)]
struct RunExpectation {
    states: Option<Vec<JobState>>,
    updates: Option<u64>,
}

impl Expectations {
    /// Reads the expectations; a malformed one is a 422 naming every field at fault.
    pub(crate) fn parse(body: &Value) -> Result<Expectations, ApiError> {
        let mut problems = Vec::new();
        let mut expectations = Expectations::default();
        let Some(members) = body.as_object() else {
            return Err(malformed(vec![Violation::new(
                "body",
                "must be an object: {\"runs\": {...}, \"refused\": N, \"warnings\": N}",
            )]));
        };
        // A member given as `null` expects nothing, as one left out.
        for (key, value) in members.iter().filter(|(_, value)| !value.is_null()) {
            match key.as_str() {
                "runs" => expectations.runs = read_runs(value, &mut problems),
                "refused" => expectations.refused = count(value, "refused", &mut problems),
                "warnings" => expectations.warnings = count(value, "warnings", &mut problems),
                other => problems.push(Violation::new(
                    other,
                    "is not an expectation; use runs, refused or warnings",
                )),
            }
        }
        if problems.is_empty() {
            Ok(expectations)
        } else {
            Err(malformed(problems))
        }
    }

    /// Checks every expectation: `Ok` when all hold, else 409 `verification_failed` with
    /// a violation for each that does not.
    pub(crate) fn check(&self, registry: &Registry, journal: &Journal) -> Result<(), ApiError> {
        let mut failures = Vec::new();
        for (job_id, expected) in &self.runs {
            check_run(registry, job_id, expected, &mut failures);
        }
        if self.refused.is_some() || self.warnings.is_some() {
            check_journal(journal, self.refused, self.warnings, &mut failures);
        }
        if failures.is_empty() {
            return Ok(());
        }
        let message = match failures.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            [first, ..] => format!(
                "{} expectations do not hold; first, {}: {}",
                failures.len(),
                first.field,
                first.message
            ),
            [] => String::new(),
        };
        Err(ApiError::VerificationFailed {
            message,
            violations: failures,
        })
    }
}

fn read_runs(value: &Value, problems: &mut Vec<Violation>) -> BTreeMap<String, RunExpectation> {
    let mut runs = BTreeMap::new();
    let Some(listed) = value.as_object() else {
        problems.push(Violation::new(
            "runs",
            "must be an object of jobIds, each {\"states\": [...], \"updates\": N}",
        ));
        return runs;
    };
    for (job_id, expected) in listed {
        let field = format!("runs.{job_id}");
        let Some(expected) = expected.as_object() else {
            problems.push(Violation::new(
                &field,
                "must be an object: {\"states\", \"updates\"}",
            ));
            continue;
        };
        runs.insert(job_id.clone(), read_run(&field, expected, problems));
    }
    runs
}

fn read_run(
    field: &str,
    expected: &Map<String, Value>,
    problems: &mut Vec<Violation>,
) -> RunExpectation {
    let mut run = RunExpectation::default();
    for (key, value) in expected.iter().filter(|(_, value)| !value.is_null()) {
        let field = format!("{field}.{key}");
        match key.as_str() {
            "states" => run.states = states(value, &field, problems),
            "updates" => run.updates = count(value, &field, problems),
            _ => problems.push(Violation::new(
                &field,
                "is not an expectation; use states or updates",
            )),
        }
    }
    run
}

fn states(value: &Value, field: &str, problems: &mut Vec<Violation>) -> Option<Vec<JobState>> {
    let Some(listed) = value.as_array() else {
        problems.push(Violation::new(field, "must be a list of states"));
        return None;
    };
    let mut states = Vec::with_capacity(listed.len());
    for (i, state) in listed.iter().enumerate() {
        match state.as_str().and_then(JobState::from_name) {
            Some(state) => states.push(state),
            None => problems.push(Violation::new(
                &format!("{field}[{i}]"),
                &format!("{state} is not a state; use {}", JobState::NAMES),
            )),
        }
    }
    (states.len() == listed.len()).then_some(states)
}

fn count(value: &Value, field: &str, problems: &mut Vec<Violation>) -> Option<u64> {
    // A whole number, however it is written (`3`, or `3.0` as JSON allows).
    let count = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(n))
            .map(|n| n as u64)
    });
    if count.is_none() {
        problems.push(Violation::new(field, "must be a whole number, 0 or more"));
    }
    count
}

fn check_run(
    registry: &Registry,
    job_id: &str,
    expected: &RunExpectation,
    failures: &mut Vec<Violation>,
) {
    let field = format!("runs.{job_id}");
    let Some(seen) = registry.states_of(job_id) else {
        if let Some(states) = &expected.states {
            failures.push(Violation::new(
                &format!("{field}.states"),
                &format!("expected {}, got no run {job_id}", path(states)),
            ));
        }
        if let Some(updates) = expected.updates {
            failures.push(Violation::new(
                &format!("{field}.updates"),
                &format!(
                    "expected {}, got no run {job_id}",
                    updates_in_words(updates)
                ),
            ));
        }
        return;
    };
    if let Some(states) = &expected.states {
        let field = format!("{field}.states");
        if seen.dropped > 0 {
            failures.push(Violation::new(
                &field,
                &format!(
                    "cannot be told: --max-history dropped the run's {} oldest updates",
                    seen.dropped
                ),
            ));
        } else {
            let mut went: Vec<JobState> = Vec::new();
            for state in seen.states.iter().flatten() {
                if went.last() != Some(state) {
                    went.push(*state);
                }
            }
            if &went != states {
                failures.push(Violation::new(
                    &field,
                    &format!("expected {}, got {}", path(states), path(&went)),
                ));
            }
        }
    }
    if let Some(updates) = expected.updates
        && updates != seen.update_count
    {
        failures.push(Violation::new(
            &format!("{field}.updates"),
            &format!(
                "expected {}, got {}",
                updates_in_words(updates),
                updates_in_words(seen.update_count)
            ),
        ));
    }
}

fn check_journal(
    journal: &Journal,
    refused: Option<u64>,
    warnings: Option<u64>,
    failures: &mut Vec<Violation>,
) {
    let view = journal.view(&JournalFilter::default());
    if view.dropped > 0 {
        let why = format!(
            "cannot be told: --journal-size dropped the {} oldest journal entries",
            view.dropped
        );
        for (field, expected) in [("refused", refused), ("warnings", warnings)] {
            if expected.is_some() {
                failures.push(Violation::new(field, &why));
            }
        }
        return;
    }
    if let Some(expected) = refused {
        let codes: Vec<String> = view
            .entries
            .iter()
            .filter(|e| e.status.is_none_or(|status| status >= 400))
            .map(|e| match (e.status, e.code) {
                (Some(status), Some(code)) => format!("{status} {}", code.as_str()),
                (Some(status), None) => status.to_string(),
                (None, _) => "dropped".to_owned(),
            })
            .collect();
        if codes.len() as u64 != expected {
            let mut message = format!("expected {expected} refused, got {}", codes.len());
            if !codes.is_empty() {
                let _ = write!(message, " ({})", codes.join(", "));
            }
            failures.push(Violation::new("refused", &message));
        }
    }
    if let Some(expected) = warnings {
        let warned: Vec<String> = view
            .entries
            .iter()
            .filter(|e| e.path == routes::STATUS && e.status == Some(200) && !e.warnings.is_empty())
            .map(|e| {
                let fields: Vec<&str> = e.warnings.iter().map(|w| &*w.field).collect();
                format!(
                    "{}: {}",
                    e.job_id.as_deref().unwrap_or("?"),
                    fields.join(", ")
                )
            })
            .collect();
        if warned.len() as u64 != expected {
            let mut message = format!(
                "expected {expected} updates with a warning, got {}",
                warned.len()
            );
            if !warned.is_empty() {
                let _ = write!(message, " ({})", warned.join("; "));
            }
            failures.push(Violation::new("warnings", &message));
        }
    }
}

/// `starting -> running -> finished`; `none` for no state at all.
fn path(states: &[JobState]) -> String {
    if states.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    names.join(" -> ")
}

fn updates_in_words(n: u64) -> String {
    if n == 1 {
        "1 update".to_owned()
    } else {
        format!("{n} updates")
    }
}

fn malformed(violations: Vec<Violation>) -> ApiError {
    ApiError::invalid("the expectations cannot be read", violations)
}
