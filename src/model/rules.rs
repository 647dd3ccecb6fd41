//! The rules an update is held to against its run (docs/contract.md, Validation):
//! transitions, identity, timing, and the result-consistency warnings. They read facts
//! and say what they find; they keep nothing and lock nothing (the registry applies).

use std::sync::Arc;

use super::problem::{Problem, ProblemKind, Violation, Warning};
use super::state::JobState;
use super::time::ATTOS_PER_MILLI;
use super::update::Facts;

/// What the rules say of an update: problems (refused in strict mode), warnings (never
/// refused), and the run's facts as they will be if the update is applied.
#[derive(Debug, Default)]
pub struct Review {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Warning>,
    pub merged: Facts,
}

/// Checks an update for run `job_id` against the run's current status (`None` for a new
/// run). The timing rules and warnings are judged on the status as it would be after the
/// merge, so fields carried over count too.
pub fn review(job_id: &str, current: Option<&Facts>, mut update: Facts) -> Review {
    let mut review = Review::default();
    // Names written twice were read last-wins; the client is told, in both modes.
    if let Some(repeated) = update.repeated_keys.take() {
        review.warnings.extend(*repeated);
    }
    let merged = match current {
        Some(current) => {
            check_transition(job_id, current, &update, &mut review.problems);
            let merged = current.merged_with(update);
            check_identity(job_id, current, &merged, &mut review.problems);
            merged
        }
        None => update,
    };
    check_timing(&merged, &mut review.problems);
    check_consistency(job_id, &merged, &mut review.warnings);
    review.merged = merged;
    review
}

fn check_transition(job_id: &str, current: &Facts, update: &Facts, problems: &mut Vec<Problem>) {
    let (Some(from), Some(to)) = (current.state, update.state) else {
        return;
    };
    if !from.may_go_to(to) {
        let problem = Problem::new(
            ProblemKind::Transition,
            "state",
            format!("{from} -> {to} is not allowed"),
        );
        problems
            .push(problem.with_headline(format!("run {job_id} is {from}; it cannot move to {to}")));
    }
}

/// Compares the current facts with the merged ones: a field the update lacks is carried
/// over, so only what the update changes can differ.
fn check_identity(job_id: &str, current: &Facts, merged: &Facts, problems: &mut Vec<Problem>) {
    if let Some(old) = current.config_id() {
        let message = match merged.config_id() {
            Some(new) if new == old => None,
            Some(new) => Some(format!(
                "jobConfig.id is \"{old}\" and cannot change to \"{new}\""
            )),
            None => Some(format!(
                "jobConfig.id is \"{old}\" and cannot be removed by a jobConfig without an id"
            )),
        };
        if let Some(message) = message {
            let headline = format!("run {job_id}: {message}");
            problems.push(
                Problem::new(ProblemKind::Identity, "jobConfig.id", message)
                    .with_headline(headline),
            );
        }
    }
    if let (Some(old), Some(new)) = (&current.start_time, &merged.start_time) {
        // Timestamps compare as instants, so another offset is not a change.
        if old != new {
            let message = format!("startTime is {old} and cannot change to {new}");
            let headline = format!("run {job_id}: {message}");
            problems.push(
                Problem::new(ProblemKind::Identity, "startTime", message).with_headline(headline),
            );
        }
    }
}

fn check_timing(merged: &Facts, problems: &mut Vec<Problem>) {
    let mut timing = |field: &str, message: String| {
        let headline = format!("invalid timing: {message}");
        problems.push(Problem::new(ProblemKind::Timing, field, message).with_headline(headline));
    };
    if let (Some(start), Some(end)) = (&merged.start_time, &merged.end_time) {
        let elapsed = end.attos() - start.attos();
        if elapsed < 0 {
            timing(
                "endTime",
                format!("endTime {end} is before startTime {start}"),
            );
        }
        if let Some(duration) = merged.duration {
            // One millisecond of slack, for timestamps finer than a millisecond.
            let off_by = i128::from(duration) * ATTOS_PER_MILLI - elapsed;
            if off_by.abs() > ATTOS_PER_MILLI {
                timing(
                    "duration",
                    format!(
                        "duration is {duration} ms but endTime - startTime is {} ms",
                        format_ms(elapsed)
                    ),
                );
            }
        }
    }
    if let Some(state) = merged.state.filter(|s| !s.is_ended()) {
        for (field, present) in [
            ("endTime", merged.end_time.is_some()),
            ("duration", merged.duration.is_some()),
        ] {
            if present {
                timing(
                    field,
                    format!(
                        "{field} belongs only to an ended state (finished, cancelled, error, \
                         skipped); the state is {state}"
                    ),
                );
            }
        }
    }
}

fn check_consistency(job_id: &str, merged: &Facts, warnings: &mut Vec<Warning>) {
    let Some(result) = &merged.result else {
        return;
    };
    let pairs = [
        (
            "result.jobRunId",
            result.job_run_id.as_deref(),
            "jobId",
            Some(job_id),
        ),
        (
            "result.jobConfigId",
            result.job_config_id.as_deref(),
            "jobConfig.id",
            merged.config_id(),
        ),
        (
            "result.state",
            result.state.as_deref(),
            "state",
            merged.state.map(JobState::as_str),
        ),
    ];
    for (field, theirs, other, ours) in pairs {
        if let (Some(theirs), Some(ours)) = (theirs, ours)
            && theirs != ours
        {
            warnings.push(Violation {
                field: Arc::from(field),
                message: Arc::from(format!(
                    "{field} \"{theirs}\" differs from {other} \"{ours}\""
                )),
            });
        }
    }
}

/// Attoseconds as milliseconds, with three decimals when not whole.
fn format_ms(attos: i128) -> String {
    let ms = attos as f64 / ATTOS_PER_MILLI as f64;
    if ms.fract() == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use crate::model::update::{JobConfig, JobResult};

    fn time(s: &str) -> Option<Timestamp> {
        Timestamp::parse(s)
    }

    fn ended(start: &str, end: &str, duration: u64) -> Facts {
        Facts {
            state: Some(JobState::Finished),
            start_time: time(start),
            end_time: time(end),
            duration: Some(duration),
            ..Facts::default()
        }
    }

    fn fields(problems: &[Problem]) -> Vec<(ProblemKind, &str)> {
        problems
            .iter()
            .map(|p| (p.kind, &*p.violation.field))
            .collect()
    }

    #[test]
    fn duration_must_match_the_times_within_one_millisecond() {
        let ok = ended(
            "2025-10-16T19:49:15.106Z",
            "2025-10-16T19:49:42.276Z",
            27170,
        );
        assert!(review("r", None, ok.clone()).problems.is_empty());
        let off = ended(
            "2025-10-16T19:49:15.106Z",
            "2025-10-16T19:49:42.276Z",
            27172,
        );
        let problems = review("r", None, off.clone()).problems;
        assert_eq!(fields(&problems), [(ProblemKind::Timing, "duration")]);
        assert_eq!(
            problems[0].violation.message,
            "duration is 27172 ms but endTime - startTime is 27170 ms".into()
        );
    }

    #[test]
    fn sub_millisecond_times_get_a_millisecond_of_slack() {
        let start = "2025-01-01T00:00:00.0004Z";
        let end = "2025-01-01T00:00:01.0009Z"; // 1000.5 ms later
        for duration in [1000, 1001] {
            assert!(
                review("r", None, ended(start, end, duration))
                    .problems
                    .is_empty()
            );
        }
        for duration in [998, 1002] {
            assert_eq!(
                review("r", None, ended(start, end, duration))
                    .problems
                    .len(),
                1
            );
        }
    }

    #[test]
    fn offsets_are_honoured_when_comparing_times() {
        // 12:00+02:00 is 10:00Z, so an endTime of 10:00:05Z is five seconds later.
        let facts = ended("2025-01-01T12:00:00+02:00", "2025-01-01T10:00:05Z", 5000);
        assert!(review("r", None, facts.clone()).problems.is_empty());
        let backwards = ended("2025-01-01T10:00:05Z", "2025-01-01T12:00:00+02:00", 0);
        let problems = review("r", None, backwards.clone()).problems;
        assert_eq!(
            fields(&problems),
            [
                (ProblemKind::Timing, "endTime"),
                (ProblemKind::Timing, "duration")
            ]
        );
    }

    #[test]
    fn timing_is_judged_only_on_what_is_known() {
        let no_duration = Facts {
            duration: None,
            ..ended("2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z", 0)
        };
        assert!(review("r", None, no_duration.clone()).problems.is_empty());
        let no_start = Facts {
            start_time: None,
            ..ended("2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z", 7)
        };
        assert!(review("r", None, no_start.clone()).problems.is_empty());
    }

    #[test]
    fn end_time_and_duration_belong_to_ended_states() {
        let running = Facts {
            state: Some(JobState::Running),
            ..ended("2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z", 1000)
        };
        let problems = review("r", None, running.clone()).problems;
        assert_eq!(
            fields(&problems),
            [
                (ProblemKind::Timing, "endTime"),
                (ProblemKind::Timing, "duration")
            ]
        );
    }

    #[test]
    fn carried_over_fields_count_for_timing() {
        let current = Facts {
            state: Some(JobState::Running),
            start_time: time("2025-01-01T00:00:10Z"),
            ..Facts::default()
        };
        let update = Facts {
            state: Some(JobState::Finished),
            end_time: time("2025-01-01T00:00:05Z"),
            ..Facts::default()
        };
        let problems = review("r", Some(&current), update.clone()).problems;
        assert_eq!(fields(&problems), [(ProblemKind::Timing, "endTime")]);
    }

    #[test]
    fn identity_compares_config_ids_and_start_instants() {
        let current = Facts {
            state: Some(JobState::Running),
            job_config: Some(JobConfig {
                id: Some("a".into()),
                job_type: None,
            }),
            start_time: time("2025-01-01T10:00:00Z"),
            ..Facts::default()
        };
        let same_instant = Facts {
            state: Some(JobState::Running),
            start_time: time("2025-01-01T11:00:00+01:00"),
            ..Facts::default()
        };
        assert!(
            review("r", Some(&current), same_instant.clone())
                .problems
                .is_empty()
        );

        let changed = Facts {
            state: Some(JobState::Running),
            job_config: Some(JobConfig {
                id: Some("b".into()),
                job_type: None,
            }),
            start_time: time("2025-01-01T10:00:01Z"),
            ..Facts::default()
        };
        let problems = review("r", Some(&current), changed.clone()).problems;
        assert_eq!(
            fields(&problems),
            [
                (ProblemKind::Identity, "jobConfig.id"),
                (ProblemKind::Identity, "startTime")
            ]
        );
        assert_eq!(
            problems[0].headline(),
            "run r: jobConfig.id is \"a\" and cannot change to \"b\""
        );
    }

    #[test]
    fn transitions_are_checked_against_the_current_state() {
        let finished = Facts {
            state: Some(JobState::Finished),
            ..Facts::default()
        };
        let running = Facts {
            state: Some(JobState::Running),
            ..Facts::default()
        };
        let problems = review("r", Some(&finished), running.clone()).problems;
        assert_eq!(fields(&problems), [(ProblemKind::Transition, "state")]);
        assert_eq!(
            problems[0].headline(),
            "run r is finished; it cannot move to running"
        );
        assert_eq!(
            problems[0].violation.message,
            "finished -> running is not allowed".into()
        );
        assert!(review("r", None, finished.clone()).problems.is_empty());
    }

    #[test]
    fn result_inconsistencies_are_warnings() {
        let facts = Facts {
            state: Some(JobState::Finished),
            job_config: Some(JobConfig {
                id: Some("cfg".into()),
                job_type: None,
            }),
            result: Some(JobResult {
                job_run_id: Some("other".into()),
                job_config_id: Some("cfg2".into()),
                state: Some("running".into()),
            }),
            ..Facts::default()
        };
        let review = review("run1", None, facts.clone());
        assert!(review.problems.is_empty());
        let warned: Vec<_> = review.warnings.iter().map(|w| &*w.field).collect();
        assert_eq!(
            warned,
            ["result.jobRunId", "result.jobConfigId", "result.state"]
        );
        assert_eq!(
            review.warnings[0].message,
            "result.jobRunId \"other\" differs from jobId \"run1\"".into()
        );
    }
}
