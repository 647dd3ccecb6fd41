//! A world: everything a client's requests and a test's controls act on, kept together.
//! Its runs and their histories (the registry), the journal, the job configs, the
//! scenarios and simulated runs, the fault rules and the clock, with the update path
//! over them.
//!
//! The service has its own world (the root paths') and one per session (`sessions`).
//! Everything that is not per world (the store of `--data-dir`, metrics, access control,
//! limits, shutdown, request ids) is the process's, in `app`. Handlers reach a world
//! through the api's `Scope` extractor, which chooses it; nothing else holds on to one.

use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::configs::Configs;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::registry::{Limits, Registry};
use crate::sim::{Scenario, Scenarios, Sim};
use crate::store::{Restored, Store, Unavailable, detached};
use crate::updates::Updates;

/// What every world is made of: the bounds and rules of `--max-runs` and the others, the
/// scenarios of `--scenarios`, and the metrics they count with.
pub struct Blueprint {
    pub limits: Limits,
    pub journal_size: NonZeroUsize,
    pub scenarios: Vec<Scenario>,
    pub metrics: Arc<Metrics>,
}

pub struct World {
    /// What every time it reports, and every simulated step, reads.
    pub clock: Arc<Clock>,
    pub registry: Arc<Registry>,
    pub journal: Arc<Journal>,
    pub configs: Arc<Configs>,
    /// The one way an update gets into the registry, posted or simulated.
    pub updates: Arc<Updates>,
    /// Launched runs, their scenarios and steps.
    pub sim: Arc<Sim>,
    pub faults: Arc<Faults>,
    /// Set once the world is forgotten (its session deleted): its waits and event
    /// streams end.
    closed: watch::Sender<bool>,
}

impl World {
    /// A world as `blueprint` says, on `clock`; with a store, kept there (the service's
    /// world, or a session's through a scoped handle), starting from what it `restored`.
    pub fn build(
        blueprint: &Blueprint,
        clock: Arc<Clock>,
        persisted: Option<(Arc<Store>, Restored)>,
    ) -> Result<World, String> {
        let journal = Arc::new(Journal::new(blueprint.journal_size));
        let scenarios = blueprint.scenarios.clone();
        let (registry, faults, configs, scenarios) = match persisted {
            Some((store, mut restored)) => {
                let registry = Registry::with_store(
                    blueprint.limits,
                    Arc::clone(&clock),
                    Arc::clone(&store),
                    &mut restored,
                )?;
                let faults = Faults::with_store(Arc::clone(&store), restored.faults.as_deref())?;
                let configs = Configs::persisted(Arc::clone(&store), restored.configs.as_deref())?;
                let scenarios =
                    Scenarios::persisted(scenarios, store, restored.scenarios.as_deref())?;
                (registry, faults, configs, scenarios)
            }
            None => (
                Registry::new(blueprint.limits, Arc::clone(&clock)),
                Faults::default(),
                Configs::default(),
                Scenarios::new(scenarios),
            ),
        };
        let registry = Arc::new(registry);
        let configs = Arc::new(configs);
        let updates = Arc::new(Updates::new(
            Arc::clone(&registry),
            Arc::clone(&journal),
            Arc::clone(&blueprint.metrics),
            Arc::clone(&clock),
            Arc::clone(&configs),
        ));
        let sim = Arc::new(Sim::new(
            Arc::clone(&updates),
            Arc::clone(&registry),
            Arc::clone(&clock),
            Arc::clone(&configs),
            scenarios,
        ));
        // Simulated steps due by the system clock need a task to apply them; outside a
        // runtime, `serve` starts it.
        if tokio::runtime::Handle::try_current().is_ok() {
            sim.start_driver();
        }
        Ok(World {
            clock,
            registry,
            journal,
            configs,
            updates,
            sim,
            faults: Arc::new(faults),
            closed: watch::channel(false).0,
        })
    }

    /// Ends the world's waits (404) and event streams: its session is gone.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`World::close`] has been called.
    pub async fn closed(&self) {
        let mut closed = self.closed.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Forgets every run, the journal, configs, simulated runs and fault rules; the
    /// scenarios are those of the start again. The clock does not go back. With a store,
    /// all of it is written in one transaction and forgotten once that is durable (the
    /// change runs to its end even if the caller goes away).
    pub async fn reset(self: &Arc<Self>) -> Result<(), Unavailable> {
        let world = Arc::clone(self);
        detached(async move {
            // Each part stages what it writes and holds its own lock until it is applied:
            // configs, then scenarios, then faults, then the registry, in that order,
            // as every other change takes them.
            let (configs_write, configs_then) = world.configs.clear_staged().await;
            let (sim_write, sim_then) = world.sim.reset_staged().await;
            let (faults_write, faults_then) = world.faults.clear_staged().await;
            let writes = [configs_write, sim_write, faults_write]
                .into_iter()
                .flatten()
                .collect();
            let journal = Arc::clone(&world.journal);
            world
                .registry
                .clear_durably(writes, move || {
                    configs_then();
                    sim_then();
                    faults_then();
                    journal.clear();
                })
                .await
        })
        .await
    }

    /// Forgets every run, ending their simulations.
    pub async fn forget_runs(&self) -> Result<(), Unavailable> {
        let sim = Arc::clone(&self.sim);
        self.registry
            .clear_durably(Vec::new(), move || sim.forget_simulations())
            .await
    }

    /// Forgets run `job_id`, ending its simulation (a step due later must not bring it
    /// back); `false` when there was no such run.
    pub async fn forget_run(&self, job_id: &str) -> Result<bool, ApiError> {
        self.sim.forget_simulation(job_id);
        self.registry.remove_durably(job_id).await
    }
}
