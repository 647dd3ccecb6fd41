//! Not part of the API: the pieces of the status-update path that
//! `benches/update_path.rs` measures (parsing a body, applying it to a registry, reading
//! runs back), without HTTP. Benches are a crate of their own, so they can reach only
//! what is public; this hidden module lets them measure the very code the service runs
//! rather than the whole router around it. Nothing else uses it, and it may change with
//! any release.

use std::num::NonZeroUsize;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::clock::{Clock, ClockMode};
use crate::config::Validation;
use crate::model::{Problem, StatusUpdate};
use crate::registry;

/// A body parsed into a status update, and the problems the parse found.
pub struct Parsed {
    update: StatusUpdate,
    problems: Vec<Problem>,
}

/// Parses a status update's body as the status route does; `None` when it is not JSON.
pub fn parse(body: &[u8]) -> Option<Parsed> {
    let (update, problems) = StatusUpdate::parse(body).ok()?;
    Some(Parsed { update, problems })
}

/// A registry with strict validation on the system clock, as the service's.
pub struct Registry(registry::Registry);

impl Registry {
    /// A registry of at most `max_runs` runs of `max_history` entries each, taking
    /// statuses up to 1 MiB.
    ///
    /// # Panics
    ///
    /// When either bound is 0.
    pub fn new(max_runs: usize, max_history: usize) -> Registry {
        let bounds = (
            NonZeroUsize::new(max_runs),
            NonZeroUsize::new(max_history),
            NonZeroUsize::new(1 << 20),
        );
        let (Some(max_runs), Some(max_history), Some(max_status_bytes)) = bounds else {
            panic!("a registry's bounds must be at least 1");
        };
        let limits = registry::Limits {
            max_runs,
            max_history,
            max_status_bytes,
            validation: Validation::Strict,
        };
        Registry(registry::Registry::new(
            limits,
            Arc::new(Clock::new(ClockMode::System)),
        ))
    }

    /// Applies a parsed update as the service does (without a store): `Some(repeat)`
    /// when it is accepted, `None` when it is refused or names no run.
    pub fn apply(&self, parsed: Parsed) -> Option<bool> {
        let job_id = parsed.update.job_id.clone()?;
        let accepted = self.0.apply(job_id, parsed.update, parsed.problems).ok()?;
        Some(accepted.repeat)
    }

    /// Run `job_id` as `GET /_mock/runs/{jobId}` answers it, written as JSON.
    pub fn run_json(&self, job_id: &str) -> Option<Vec<u8>> {
        serde_json::to_vec(&self.0.run(job_id)?).ok()
    }

    /// How many history entries run `job_id` holds, and how many it dropped.
    pub fn history_len(&self, job_id: &str) -> Option<(usize, u64)> {
        let history = self.0.history(job_id)?;
        Some((history.updates.len(), history.dropped))
    }

    /// Every run's current status, as `GET /job-launcher/launcher/status` lists them.
    pub fn statuses(&self) -> Vec<Box<RawValue>> {
        self.0.statuses()
    }
}
