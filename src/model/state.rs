//! The ten states of a Fusion job run and the transition table between them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A run's state, as Fusion spells it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Unknown,
    Idle,
    Starting,
    Running,
    Finishing,
    Cancelling,
    Finished,
    Cancelled,
    Error,
    Skipped,
}

impl JobState {
    /// Every state, in the order Fusion lists them.
    pub const ALL: [JobState; 10] = [
        JobState::Unknown,
        JobState::Idle,
        JobState::Starting,
        JobState::Running,
        JobState::Finishing,
        JobState::Cancelling,
        JobState::Finished,
        JobState::Cancelled,
        JobState::Error,
        JobState::Skipped,
    ];

    /// The allowed values, for error messages: `unknown, idle, ...`.
    pub const NAMES: &'static str = "unknown, idle, starting, running, finishing, cancelling, finished, cancelled, error, skipped";

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Unknown => "unknown",
            JobState::Idle => "idle",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Finishing => "finishing",
            JobState::Cancelling => "cancelling",
            JobState::Finished => "finished",
            JobState::Cancelled => "cancelled",
            JobState::Error => "error",
            JobState::Skipped => "skipped",
        }
    }

    /// The state named exactly `name` (lowercase, as on the wire).
    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a run in this state is over: nothing may follow but a repeat.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Cancelled | JobState::Error | JobState::Skipped
        )
    }

    /// The transition table (docs/contract.md, Validation): may a run in `self` move to `to`?
    pub fn may_go_to(self, to: JobState) -> bool {
        use JobState::*;
        match self {
            Unknown | Idle => true,
            Starting => !matches!(to, Unknown | Idle),
            Running => matches!(
                to,
                Running | Finishing | Cancelling | Finished | Cancelled | Error
            ),
            Finishing => matches!(to, Finishing | Cancelling | Finished | Cancelled | Error),
            Cancelling => matches!(to, Cancelling | Cancelled | Finished | Error),
            Finished | Cancelled | Error | Skipped => false,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::JobState::{self, *};

    /// The contract's table, written out row by row as the allowed targets.
    fn allowed_targets(from: JobState) -> &'static [JobState] {
        match from {
            Unknown | Idle => &JobState::ALL,
            Starting => &[
                Starting, Running, Finishing, Cancelling, Finished, Cancelled, Error, Skipped,
            ],
            Running => &[Running, Finishing, Cancelling, Finished, Cancelled, Error],
            Finishing => &[Finishing, Cancelling, Finished, Cancelled, Error],
            Cancelling => &[Cancelling, Cancelled, Finished, Error],
            Finished | Cancelled | Error | Skipped => &[],
        }
    }

    #[test]
    fn transition_table_matches_the_contract_for_all_100_pairs() {
        let mut checked = 0;
        for from in JobState::ALL {
            for to in JobState::ALL {
                let expected = allowed_targets(from).contains(&to);
                assert_eq!(from.may_go_to(to), expected, "{from} -> {to}");
                checked += 1;
            }
        }
        assert_eq!(checked, 100);
    }

    #[test]
    fn exactly_four_states_are_ended_and_they_allow_nothing() {
        let ended: Vec<_> = JobState::ALL.into_iter().filter(|s| s.is_ended()).collect();
        assert_eq!(ended, [Finished, Cancelled, Error, Skipped]);
        for from in ended {
            assert!(JobState::ALL.iter().all(|&to| !from.may_go_to(to)));
        }
    }

    #[test]
    fn names_round_trip_through_serde_and_from_name() {
        for state in JobState::ALL {
            let wire = serde_json::to_string(&state).unwrap_or_default();
            assert_eq!(wire, format!("\"{}\"", state.as_str()));
            assert_eq!(JobState::from_name(state.as_str()), Some(state));
            assert!(JobState::NAMES.contains(state.as_str()));
        }
        assert_eq!(JobState::from_name("Running"), None);
        assert_eq!(JobState::from_name(""), None);
    }
}
