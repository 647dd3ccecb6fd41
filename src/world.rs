//! A world: everything a client's requests and a test's controls act on, kept together.
//! Its runs and their histories (the registry), the journal, the job configs, the
//! scenarios and simulated runs, the fault rules and the clock, with the update path
//! over them.
//!
//! The service has one world today. Everything that is not per world (the store of
//! `--data-dir`, metrics, access control, limits, shutdown, request ids) is the
//! process's, in `app`. Handlers reach the world through the api's `Scope` extractor,
//! which chooses it; nothing else holds on to one.

use std::sync::Arc;

use crate::clock::Clock;
use crate::configs::Configs;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::journal::Journal;
use crate::registry::Registry;
use crate::sim::Sim;
use crate::store::{Unavailable, detached};
use crate::updates::Updates;

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
}

impl World {
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
