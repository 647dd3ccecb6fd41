//! The methods [`MockServer`](super::MockServer) and [`MockSession`](super::MockSession)
//! share: what a test reads and changes in one world (the root's, or a session's),
//! written once so that the two cannot drift apart.
//!
//! A type that expands `world_methods!()` in its `impl` has `fn world(&self) ->
//! &Arc<World>` (the world the methods act on, and nothing else of the server's) and
//! `fn sessions(&self) -> &Sessions`. The names the methods use are those in scope where
//! they expand, the server module's and its children's: the views, `Error`, `JobState`,
//! `Duration`, `Value`, `DateTime`, `Utc`, `Until`, `RunFilter`, `JournalFilter`,
//! `Expectations`, `typed`, `unreadable` and `to_value`.

/// Expands, inside an `impl` block, the methods that act on `self.world()`.
macro_rules! world_methods {
    () => {
        /// Waits until run `job_id` is in `state` (also when it does not exist yet, and also
        /// when it only passes through it), and gives the run then.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] at the timeout, saying what the run is like then.
        pub async fn wait_for_state(
            &self,
            job_id: &str,
            state: JobState,
            timeout: Duration,
        ) -> Result<Run, Error> {
            self.wait(job_id, Until::State(state), timeout).await
        }

        /// Waits until run `job_id` has ended (finished, cancelled, error or skipped), and
        /// gives it as `wait_for_state` does.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] at the timeout, saying what the run is like then.
        pub async fn wait_for_end(&self, job_id: &str, timeout: Duration) -> Result<Run, Error> {
            self.wait(job_id, Until::Ended, timeout).await
        }

        async fn wait(&self, job_id: &str, until: Until, timeout: Duration) -> Result<Run, Error> {
            let world = self.world();
            tokio::select! {
                outcome = world.registry.wait(job_id, until, timeout) => match outcome {
                    Ok(run) => typed(&run).ok_or_else(|| unreadable(job_id)),
                    Err(timed_out) => Err(timed_out.into()),
                },
                () = world.closed() => Err(Error::Refused {
                    status: 404,
                    code: "not_found".to_owned(),
                    message: format!(
                        "stopped waiting for run {job_id} to {until}: \
    its session was deleted or expired"
                    ),
                    violations: Vec::new(),
                }),
            }
        }

        /// Run `job_id`'s history: every update it accepted, oldest first, each as posted,
        /// with its `seq`, arrival time and warnings; `None` when there is no such run.
        pub async fn history(&self, job_id: &str) -> Option<History> {
            self.world()
                .registry
                .history(job_id)
                .and_then(|history| typed(&history))
        }

        /// Every run, in the order they first appeared, as `GET /_mock/runs` lists them.
        pub async fn runs(&self) -> Vec<Run> {
            let list = self.world().registry.list(&RunFilter::default(), 0, None);
            list.runs.iter().filter_map(typed).collect()
        }

        /// One run as `GET /_mock/runs/{jobId}` shows it; `None` when there is no such run.
        pub async fn run(&self, job_id: &str) -> Option<Run> {
            self.world()
                .registry
                .run(job_id)
                .and_then(|run| typed(&run))
        }

        /// The journal, oldest first, as `GET /_mock/requests` lists it: every request to the
        /// Fusion routes, accepted or refused, with status, error code and warnings, and how
        /// many `--journal-size` dropped.
        pub async fn requests(&self) -> Journal {
            let view = self.world().journal.view(&JournalFilter::default());
            typed(&view).unwrap_or(Journal {
                dropped: view.dropped,
                entries: Vec::new(),
            })
        }

        /// Forgets every run, the journal, configs, simulated runs and fault rules, as
        /// `POST /_mock/reset` does; the scenarios are those the server started with again.
        /// Nothing of the other sessions (or of the root) changes.
        pub async fn reset(&self) {
            // In memory, where nothing can fail to be stored.
            let _ = self.world().reset().await;
        }

        /// Launches a simulated run of `config` (`{"id", "type", ...}`), as
        /// `POST /job-launcher/launcher` does, and gives its JobStatus (`starting`).
        ///
        /// # Errors
        ///
        /// The refusal the route would answer: a config without a valid `id` or `type`.
        pub async fn launch(&self, config: &Value) -> Result<Run, Error> {
            let body = config.to_string();
            let (job_id, _) = self
                .world()
                .sim
                .launch_posted(body.as_bytes(), None)
                .await?;
            self.run(&job_id).await.ok_or_else(|| unreadable(&job_id))
        }

        /// Adds or replaces a scenario (`{"match", "steps", "progression"}`), as
        /// `PUT /_mock/scenarios/{match}` does.
        ///
        /// # Errors
        ///
        /// A scenario that could not run, each problem named.
        pub async fn put_scenario(&self, scenario: &Value) -> Result<(), Error> {
            let pattern = scenario.get("match").and_then(Value::as_str).unwrap_or("");
            self.world()
                .sim
                .scenarios()
                .put(pattern, scenario, self.now())
                .await?;
            Ok(())
        }

        /// Moves a manual clock forward by `by`, applying every simulated step due within
        /// the span, in order, each at its own due time; gives the clock's new time.
        ///
        /// # Errors
        ///
        /// The clock is the system's: start the server with
        /// [`MockServerBuilder::manual_clock`](crate::MockServerBuilder::manual_clock), or
        /// make the session with `"clock": "manual"`.
        pub async fn advance(&self, by: Duration) -> Result<DateTime<Utc>, Error> {
            let now = self.world().sim.advance(by).await?;
            // Sessions expire by the root's clock: if that one moved, some may be due.
            self.sessions().clock_moved();
            Ok(now)
        }

        /// The mock's time: the manual clock's, or the system's.
        pub fn now(&self) -> DateTime<Utc> {
            self.world().clock.now()
        }

        /// Adds a fault rule (`{"match", "action", "times", "probability", "seed", "ttl"}`),
        /// as `POST /_mock/faults` does, and gives its id.
        ///
        /// # Errors
        ///
        /// A rule that is not valid, each problem named.
        pub async fn add_fault(&self, rule: &Value) -> Result<u64, Error> {
            let added = self.world().faults.add(rule, self.now()).await?;
            Ok(added.id)
        }

        /// Every fault rule, with `fired` and `active`, as `GET /_mock/faults` lists them.
        pub async fn faults(&self) -> Vec<Value> {
            let rules = self.world().faults.list(self.now());
            rules.iter().map(to_value).collect()
        }

        /// Removes every fault rule.
        pub async fn clear_faults(&self) {
            // In memory, where nothing can fail to be stored.
            let _ = self.world().faults.clear().await;
        }

        /// Checks `expectations` on what clients did, as `POST /_mock/verify` does:
        /// `{"runs": {"<jobId>": {"states": [...], "updates": N}}, "refused": N,
        /// "warnings": N}`, every key optional.
        ///
        /// # Errors
        ///
        /// [`Error::Refused`] with `verification_failed` (409) and a violation for each check
        /// that does not hold, expected and actual in words; or `validation_failed` (422) for
        /// an expectation that cannot be read.
        pub async fn verify(&self, expectations: &Value) -> Result<(), Error> {
            let expectations = Expectations::parse(expectations)?;
            let world = self.world();
            expectations.check(&world.registry, &world.journal)?;
            Ok(())
        }
    };
}
