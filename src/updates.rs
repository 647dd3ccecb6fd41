//! The update path: every status update, posted by a driver or simulated, goes through
//! [`Updates::submit`]. It is parsed, judged and applied by the registry (in memory, or
//! with `--data-dir` only once it is on disk), journaled and counted, and the config it
//! names is remembered.
//!
//! Journaling comes before anyone can hear of an accepted update: a test that has seen a
//! run change always finds the request that changed it in the journal. This module
//! answers no HTTP and locks no run: the registry does that.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::configs::Configs;
use crate::error::ApiError;
use crate::journal::{Journal, Record};
use crate::metrics::Metrics;
use crate::model::json::RawJson;
use crate::model::{Problem, StatusUpdate};
use crate::registry::{Accepted, Creates, DurableWitness, Registry};
use crate::routes;

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

pub struct Updates {
    registry: Arc<Registry>,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    clock: Arc<Clock>,
    configs: Arc<Configs>,
}

impl Updates {
    pub fn new(
        registry: Arc<Registry>,
        journal: Arc<Journal>,
        metrics: Arc<Metrics>,
        clock: Arc<Clock>,
        configs: Arc<Configs>,
    ) -> Self {
        Updates {
            registry,
            journal,
            metrics,
            clock,
            configs,
        }
    }

    /// Parses, judges and applies one status update: the path of every update. Gives the
    /// jobId when one could be read, and the outcome. With [`Creates::No`] the update is
    /// only for a run that exists (a simulated step), so a forgotten run stays forgotten.
    ///
    /// The update is journaled (as a POST of the status route) and counted here, an
    /// accepted one before a waiter or a subscriber can hear of it.
    pub async fn submit(
        &self,
        body: &[u8],
        problems: Vec<Problem>,
        source: Source,
        creates: Creates,
    ) -> Submitted {
        let journaling = self.journaling(source);
        let (job_id, update, problems) = match read_update(body, problems, &journaling) {
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
            && !self.configs.knows(&id, &config)
        {
            self.configs.remember_now(id, &config);
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

    /// [`Updates::submit`] with a store: a config the update makes known is written in
    /// the same transaction as the update, and both are applied once that is durable.
    async fn submit_durably(
        &self,
        job_id: Arc<str>,
        update: StatusUpdate,
        problems: Vec<Problem>,
        creates: Creates,
        journaling: Journaling,
    ) -> Submitted {
        let (also, remember) = match config_of(&update) {
            Some((id, config)) if !self.configs.knows(&id, &config) => {
                let (write, remembered) = self.configs.remember_staged(id, &config).await;
                (write, Some(remembered))
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
                if let Some(remembered) = remember {
                    remembered.install();
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

    fn journaling(&self, source: Source) -> Journaling {
        Journaling {
            journal: Arc::clone(&self.journal),
            metrics: Arc::clone(&self.metrics),
            time: self.clock.now(),
            source,
        }
    }

    /// Counts an update refused before it could be read (a body too large to read).
    pub fn count_refusal(&self, refusal: &ApiError) {
        self.metrics.update_refused(refusal.code());
    }
}

/// Reads a status update: its jobId, the update, and the problems found so far; or,
/// when it cannot be checked against a run (malformed, no jobId), its refusal,
/// journaled.
fn read_update(
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
        let named = update.named_job_id().map(|id| Arc::from(id.as_ref()));
        let refusal = ApiError::refusal(problems);
        return Err(Submitted {
            journal_seq: journaling.record(named.as_ref(), Err(&refusal)),
            job_id: named,
            outcome: Err(refusal),
        });
    };
    Ok((job_id, update, problems))
}

/// The config an update makes known: its `jobConfig`, when it has an id.
fn config_of(update: &StatusUpdate) -> Option<(String, RawJson)> {
    update
        .facts
        .config_id()
        .map(str::to_owned)
        .zip(update.members.get("jobConfig").cloned())
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

/// The fuzzing corpus's mutations (the corpus's own file, shared with the status route's
/// fuzzer in `tests/it/fuzz.rs`).
#[cfg(test)]
#[path = "../tests/corpus/mutations.rs"]
mod mutations;

#[cfg(test)]
mod tests {
    // Tests may panic on what they did not expect: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use std::num::NonZeroUsize;

    use proptest::prelude::*;

    use super::mutations::{body, prelude, shown};
    use super::*;
    use crate::clock::ClockMode;
    use crate::config::Validation;
    use crate::registry::Limits;

    /// A step whose run was forgotten between reading it and applying the step is
    /// refused, rather than creating the run again.
    #[tokio::test]
    async fn a_step_for_a_run_that_is_gone_is_refused_rather_than_creating_it() {
        let config = crate::config::Config {
            clock: ClockMode::Manual,
            ..crate::config::Config::default()
        };
        let state = crate::app::AppState::with_scenarios(&config, Vec::new());
        let world = state.world();
        let step = br#"{"jobId":"gone","state":"running"}"#;
        let submitted = world
            .updates
            .submit(step, Vec::new(), Source::Simulation, Creates::No)
            .await;
        assert!(
            matches!(submitted.outcome, Err(ApiError::NotFound(_))),
            "{:?}",
            submitted.outcome
        );
        assert!(world.registry.run("gone").is_none());
    }

    fn registry() -> Registry {
        let limits = Limits {
            max_runs: NonZeroUsize::new(8).unwrap(),
            max_history: NonZeroUsize::new(8).unwrap(),
            max_status_bytes: NonZeroUsize::new(1 << 20).unwrap(),
            validation: Validation::Strict,
        };
        Registry::new(limits, Arc::new(Clock::new(ClockMode::System)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The parser takes any bytes without panicking; the registry refuses what it is
        /// given with a 4xx or accepts it, and then takes the same update again as a repeat.
        /// A refused update changes nothing, so it is refused again with the same code.
        #[test]
        #[ignore = "slow: a fuzzer, 3,000 cases; CI runs it with --include-ignored"]
        fn the_parser_and_the_registry_take_any_bytes(body in body(), known in any::<bool>()) {
            let registry = registry();
            let parsed = match StatusUpdate::parse(&body) {
                Ok(parsed) => parsed,
                Err(malformed) => {
                    prop_assert!(!malformed.0.is_empty(), "{}", shown(&body));
                    return Ok(());
                }
            };
            let (update, problems) = parsed;
            let Some(job_id) = update.job_id.clone() else {
                prop_assert!(!problems.is_empty(), "no jobId, yet no problem: {}", shown(&body));
                return Ok(());
            };
            if known {
                let (first, first_problems) = StatusUpdate::parse(&prelude(&job_id)).unwrap();
                registry.apply(job_id.clone(), first, first_problems).unwrap();
            }
            let outcome = registry.apply(job_id.clone(), update.clone(), problems.clone());
            let again = registry.apply(job_id.clone(), update, problems.clone());
            match (outcome, again) {
                (Ok(accepted), Ok(repeated)) => {
                    prop_assert!(problems.is_empty(), "accepted with problems: {}", shown(&body));
                    prop_assert_eq!(&accepted.job_id, &job_id);
                    prop_assert!(repeated.repeat, "not taken as a repeat: {}", shown(&body));
                    prop_assert_eq!(repeated.seq, accepted.seq);
                }
                (Err(refusal), Err(again)) => {
                    prop_assert!(refusal.status().is_client_error(), "{:?}: {}", refusal, shown(&body));
                    prop_assert_eq!(refusal.code(), again.code(), "{}", shown(&body));
                }
                (first, second) => {
                    prop_assert!(false, "{:?} then {:?}: {}", first, second, shown(&body));
                }
            }
        }
    }
}
