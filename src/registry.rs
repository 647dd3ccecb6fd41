//! The runs: each run's current status, its history, and the bounds on both. This is the
//! only module that locks runs. It knows no HTTP and writes no journal: the update path
//! (`updates`) brings it updates, already parsed, and it judges and applies them.
//!
//! Runs live in a map behind a read-write lock; each run has a mutex of its own. An update
//! to a known run takes the map's read lock just long enough to find the run, then does
//! its whole read-check-write under the run's mutex, so updates to one run are applied
//! one at a time, in the order they are accepted, while other runs go on in parallel.
//! Creating, evicting and forgetting runs take the map's write lock (a new run's first
//! update is judged before it, as its rules need no registry). Lock order is always map,
//! then run; nothing takes the map's lock while holding a run's.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{OwnedRwLockReadGuard, Semaphore, broadcast, oneshot, watch};

use crate::clock::Clock;
use crate::config::Validation;
use crate::error::ApiError;
use crate::model::json::{self, Members, RawJson};
use crate::model::time::{parse_utc, rfc3339, rfc3339_exact};
use crate::model::{Facts, JobState, Problem, StatusUpdate, Warning, rules};
use crate::store::{Restored, Store, StoredEntry, StoredRun, Unavailable, Write};
use crate::sync::{lock, read, write};

/// At most this many distinct warnings are kept on a run; its history keeps them all.
const MAX_RUN_WARNINGS: usize = 100;

/// How many accepted updates the event stream buffers for its slowest subscriber before
/// that subscriber is told it lagged.
const EVENT_BUFFER: usize = 1024;

/// How big the registry may grow, and how strictly it checks.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_runs: NonZeroUsize,
    pub max_history: NonZeroUsize,
    /// How large a run's merged status may grow (`--max-body-bytes`): without a bound, a
    /// client adding a new field with every update would grow it forever.
    pub max_status_bytes: NonZeroUsize,
    pub validation: Validation,
}

pub struct Registry {
    runs: RwLock<RunMap>,
    /// The last `seq` handed out; one counter for the whole registry. An update is
    /// recorded and published while this is held, so events go out in `seq` order and
    /// every `seq` up to the one held here is in its run's history.
    sequencer: Mutex<u64>,
    /// Accepted updates, for the event stream.
    /// Made by the first subscriber: a channel holds its whole buffer from the start,
    /// and a session's world that no one streams should cost next to nothing.
    events: OnceLock<broadcast::Sender<Arc<UpdateEvent>>>,
    watchers: Watchers,
    /// The runs that have ended, by the `seq` of their last update: the eviction order.
    /// Entries may be stale (the run changed or went); eviction checks each against its
    /// run. Locked under a run's lock or the map's, never while taking either.
    ended: Mutex<BTreeMap<u64, Arc<str>>>,
    /// Runs evicted since the start or the last reset, as the run list reports them.
    evicted: AtomicU64,
    /// Runs evicted since the start, for the metrics, which never go down.
    evicted_total: AtomicU64,
    /// The last `seq` whose update has been applied or abandoned: every `seq` up to it is
    /// in its run's history unless refused by the store, dropped or forgotten. Readers
    /// (waiters, the event stream's replay) start from it.
    published: AtomicU64,
    limits: Limits,
    clock: Arc<Clock>,
    /// Where writes go with `--data-dir`.
    store: Option<Arc<Store>>,
    /// With `--data-dir`, what a clear must not interleave with: updates and removals hold
    /// it shared until their change is applied or abandoned; a clear holds it alone.
    changes: Arc<tokio::sync::RwLock<()>>,
}

impl Slot {
    fn new(order: u64, ended_at: u64, run: Run, permits: usize) -> Self {
        Slot {
            order,
            gate: Semaphore::new(permits),
            ended_at: AtomicU64::new(ended_at),
            run: Mutex::new(run),
        }
    }

    fn job_id(&self) -> Arc<str> {
        Arc::clone(&lock(&self.run).job_id)
    }
}

/// The runs by jobId.
type RunMap = HashMap<Arc<str>, Arc<Slot>, foldhash::fast::RandomState>;

/// A run and what the registry reads of it without taking its lock.
struct Slot {
    /// The `seq` of the run's first update: runs are listed in this order.
    order: u64,
    /// With `--data-dir`, one change to the run at a time: its permit is held from when a
    /// change is judged until its write has been applied or abandoned, so the next change
    /// is judged against what is on disk.
    gate: Semaphore,
    /// The `seq` of the run's last update while it has ended, else `u64::MAX`: its key in
    /// the eviction order, read without locking the run.
    ended_at: AtomicU64,
    run: Mutex<Run>,
}

#[derive(Clone)]
struct Run {
    job_id: Arc<str>,
    /// The `seq` of its first update (0 before it has one): runs are listed in this order.
    order: u64,
    /// Set when the run is forgotten, so that an update that found it just before
    /// looks it up again instead of writing to a run no one can read.
    removed: bool,
    // A run with no update yet (`update_count` 0) is one whose first update is still
    // being written (`--data-dir`): readers do not see it (`is_visible`).
    /// The current status: every update's members merged at the top level, in the order
    /// each key first appeared. Values share the bodies in history they came from; when
    /// an entry is dropped its values are copied out (`log`), so a
    /// long-lived field does not keep a whole old body alive.
    status: Members,
    /// The size of `status` as JSON, kept within `Limits::max_status_bytes`.
    status_bytes: usize,
    facts: Facts,
    first_update_at: DateTime<Utc>,
    last_update_at: DateTime<Utc>,
    update_count: u64,
    history: VecDeque<Entry>,
    dropped: u64,
    warnings: Vec<Warning>,
}

#[derive(Clone)]
struct Entry {
    seq: u64,
    received_at: DateTime<Utc>,
    update: RawJson,
    warnings: Vec<Warning>,
    /// The run's state once the update was merged: what a waiter looks for, so that a
    /// state the run only passed through still counts.
    state: Option<JobState>,
}

/// Called with each accepted update once it is in history, before anyone hears of it
/// (waiters, subscribers): what must be written by then, such as its journal entry.
pub type Witness<'a> = &'a dyn Fn(&Accepted);

/// The answer to an accepted update: which history entry holds it, and what it raised.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    #[schema(value_type = String)]
    pub job_id: Arc<str>,
    /// The run's state after the update.
    pub state: Option<JobState>,
    /// The `seq` of the history entry; for a repeat, that of the update it repeats.
    pub seq: u64,
    /// An exact repeat of the run's last update, which adds no history entry.
    pub repeat: bool,
    pub warnings: Vec<Warning>,
}

/// A run as `/_mock/runs` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    #[schema(value_type = String)]
    pub job_id: Arc<str>,
    /// The current state, also found in `status`; absent while no update has named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// The current status: every update merged at the top level, values as posted.
    #[schema(value_type = Object)]
    pub status: Box<RawValue>,
    #[schema(format = DateTime)]
    pub first_update_at: String,
    #[schema(format = DateTime)]
    pub last_update_at: String,
    pub update_count: u64,
    pub warnings: Vec<Warning>,
}

/// What [`Registry::states_of`] gives.
#[derive(Debug, Clone)]
pub struct SeenStates {
    pub states: Vec<Option<JobState>>,
    pub dropped: u64,
    pub update_count: u64,
}

/// A page of the run list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunList {
    /// Runs matching the filters, on every page.
    pub total: usize,
    /// Runs evicted by `--max-runs` since the start or the last reset.
    pub evicted: u64,
    pub runs: Vec<RunView>,
}

/// Which runs a listing shows; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub states: Option<Vec<JobState>>,
    pub job_type: Option<String>,
    pub job_config_id: Option<String>,
}

/// A run's history, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    #[schema(value_type = String)]
    pub job_id: Arc<str>,
    /// Entries dropped by `--max-history`.
    pub dropped: u64,
    pub updates: Vec<HistoryEntryView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntryView {
    pub seq: u64,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// The update exactly as posted.
    #[schema(value_type = Object)]
    pub update: RawJson,
    pub warnings: Vec<Warning>,
}

/// An accepted update as the event stream sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEvent {
    pub job_id: Arc<str>,
    pub seq: u64,
    pub received_at: String,
    pub update: RawJson,
}

/// An event ordered by its `seq` alone.
struct BySeq(UpdateEvent);

impl PartialEq for BySeq {
    fn eq(&self, other: &Self) -> bool {
        self.0.seq == other.0.seq
    }
}

impl Eq for BySeq {}

impl PartialOrd for BySeq {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BySeq {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.seq.cmp(&other.0.seq)
    }
}

/// What a waiter waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The run is in this state.
    State(JobState),
    /// The run has ended, whichever way.
    Ended,
}

impl fmt::Display for Until {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Until::State(state) => write!(f, "reach state {state}"),
            Until::Ended => f.write_str("end"),
        }
    }
}

/// A wait that ran out: what was awaited, and the run as it was then.
#[derive(Debug, Clone)]
pub struct WaitTimedOut {
    pub job_id: Arc<str>,
    pub until: Until,
    pub waited: Duration,
    /// The run when the wait ran out; `None` when it did not exist.
    pub run: Option<RunView>,
}

impl fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let WaitTimedOut {
            job_id,
            until,
            waited,
            run,
        } = self;
        let waited = crate::duration::format(*waited);
        write!(f, "run {job_id} did not {until} within {waited}; ")?;
        match run {
            Some(RunView {
                state: Some(state), ..
            }) => write!(f, "it is {state}"),
            Some(_) => f.write_str("it has no state"),
            None => f.write_str("it does not exist"),
        }
    }
}

impl std::error::Error for WaitTimedOut {}

impl Until {
    fn is_met(self, state: Option<JobState>) -> bool {
        match self {
            Until::State(wanted) => state == Some(wanted),
            Until::Ended => state.is_some_and(JobState::is_ended),
        }
    }
}

impl Registry {
    pub fn new(limits: Limits, clock: Arc<Clock>) -> Self {
        Registry {
            runs: RwLock::new(RunMap::default()),
            sequencer: Mutex::new(0),
            events: OnceLock::new(),
            watchers: Watchers::default(),
            ended: Mutex::new(BTreeMap::new()),
            evicted: AtomicU64::new(0),
            evicted_total: AtomicU64::new(0),
            published: AtomicU64::new(0),
            limits,
            clock,
            store: None,
            changes: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// A registry that writes every change to `store`, holding what it held at start.
    pub fn with_store(
        limits: Limits,
        clock: Arc<Clock>,
        store: Arc<Store>,
        restored: &mut Restored,
    ) -> Result<Self, String> {
        let mut registry = Registry::new(limits, clock);
        let mut runs = RunMap::default();
        for (stored, entries) in std::mem::take(&mut restored.runs) {
            let order = stored.order;
            let run = Run::restored(stored, entries)?;
            let last_seq = run.history.back().map_or(order, |e| e.seq);
            let job_id = Arc::clone(&run.job_id);
            let ended_at = run.ended_at(last_seq);
            if ended_at != u64::MAX {
                lock(&registry.ended).insert(ended_at, Arc::clone(&job_id));
            }
            runs.insert(job_id, Arc::new(Slot::new(order, ended_at, run, 1)));
        }
        registry.runs = RwLock::new(runs);
        registry.sequencer = Mutex::new(restored.last_seq);
        registry.published = AtomicU64::new(restored.last_seq);
        registry.evicted = AtomicU64::new(restored.evicted);
        registry.store = Some(store);
        Ok(registry)
    }

    /// The store changes are written to (`--data-dir`), if any: then they are made with
    /// the `_durably` methods, which apply a change only once it is on disk.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Checks `update` against run `job_id` and, unless a problem refuses it, applies it.
    ///
    /// `problems` are the well-formedness problems found before the run was consulted;
    /// the rules add theirs, and a refusal lists them all. A refused update changes
    /// nothing. In memory only: with a store, use [`Registry::apply_durably`].
    pub fn apply(
        &self,
        job_id: Arc<str>,
        update: StatusUpdate,
        problems: Vec<Problem>,
    ) -> Result<Accepted, ApiError> {
        self.apply_witnessed(job_id, update, problems, Creates::Yes, &|_| {})
    }

    /// [`Registry::apply`], calling `witness` with the update once it is in history and
    /// before it is published. A repeat, which adds no history entry, is not witnessed.
    /// With [`Creates::No`], an update to a run that does not exist is refused (404).
    pub fn apply_witnessed(
        &self,
        job_id: Arc<str>,
        mut update: StatusUpdate,
        problems: Vec<Problem>,
        creates: Creates,
        witness: Witness<'_>,
    ) -> Result<Accepted, ApiError> {
        debug_assert!(
            self.store.is_none(),
            "changes with a store are made durably"
        );
        loop {
            let slot = read(&self.runs).get(&job_id).cloned();
            if let Some(slot) = slot {
                let mut run = lock(&slot.run);
                // A run forgotten since the lookup: look again.
                if !run.removed {
                    return self.apply_to_known(&slot, &mut run, update, &problems, witness);
                }
            } else if creates == Creates::No {
                return Err(no_such_run(&job_id));
            } else {
                match self.apply_to_new(&job_id, update, &problems, witness) {
                    Ok(outcome) => return outcome,
                    Err(appeared) => update = *appeared,
                }
            }
        }
    }

    /// The whole read-check-write of an update to a known run, under its lock.
    fn apply_to_known(
        &self,
        slot: &Slot,
        run: &mut Run,
        update: StatusUpdate,
        problems: &[Problem],
        witness: Witness<'_>,
    ) -> Result<Accepted, ApiError> {
        let judged = match self.review_known(run, update, problems)? {
            Review::Repeat(accepted) => return Ok(accepted),
            Review::Judged(judged) => judged,
        };
        let accepted = self.record(run, judged, witness);
        self.set_ended(slot, &run.job_id, run.ended_at(accepted.seq));
        self.watchers.notify(&accepted.job_id);
        Ok(accepted)
    }

    /// An update to a known run, reviewed: a repeat's answer, or the update judged.
    fn review_known(
        &self,
        run: &Run,
        update: StatusUpdate,
        problems: &[Problem],
    ) -> Result<Review, ApiError> {
        if problems.is_empty() && run.is_repeat(&update) {
            return Ok(Review::Repeat(run.repeated()));
        }
        let StatusUpdate {
            raw,
            members,
            facts,
            ..
        } = update;
        // Size comes before the rules, as 413 comes before 409 and 422.
        let status_bytes = run.status_bytes_with(&members);
        if status_bytes > self.limits.max_status_bytes.get() {
            return Err(ApiError::PayloadTooLarge(format!(
                "run {}'s merged status would be {status_bytes} bytes, more than the limit of {} \
                 (--max-body-bytes)",
                run.job_id, self.limits.max_status_bytes
            )));
        }
        let (merged, warnings) = self.judge(&run.job_id, Some(&run.facts), facts, problems)?;
        Ok(Review::Judged(Judged {
            raw,
            members,
            merged,
            warnings,
        }))
    }

    /// Creates a run with its first update. The update is judged before any lock is
    /// taken (a new run's rules need no registry); it comes back as `Err` when the run
    /// appeared meanwhile, so it must be judged against that run instead.
    fn apply_to_new(
        &self,
        job_id: &Arc<str>,
        mut update: StatusUpdate,
        problems: &[Problem],
        witness: Witness<'_>,
    ) -> Result<Result<Accepted, ApiError>, Box<StatusUpdate>> {
        let facts = std::mem::take(&mut update.facts);
        let (merged, warnings) = match self.judge(job_id, None, facts, problems) {
            Ok(judged) => judged,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut runs = write(&self.runs);
        if runs.contains_key(job_id) {
            // With no run to merge into, the judged facts are the update's own.
            update.facts = merged;
            return Err(Box::new(update));
        }
        // The evicted run is freed once the lock is released: its memory is cold, and
        // freeing it takes a while.
        let evicted = if runs.len() >= self.limits.max_runs.get() {
            match self.evict_one(&mut runs) {
                Ok(slot) => Some(slot),
                Err(full) => return Ok(Err(full)),
            }
        } else {
            None
        };
        let mut run = Run::new(Arc::clone(job_id), self.clock.now());
        let judged = Judged {
            raw: update.raw,
            members: update.members,
            merged,
            warnings,
        };
        let accepted = self.record(&mut run, judged, witness);
        let ended_at = run.ended_at(accepted.seq);
        let slot = Slot::new(accepted.seq, u64::MAX, run, 1);
        self.set_ended(&slot, job_id, ended_at);
        runs.insert(Arc::clone(job_id), Arc::new(slot));
        drop(runs);
        drop(evicted);
        self.watchers.notify(job_id);
        Ok(Ok(accepted))
    }

    /// Reviews an update against its run's facts (`None` for a new run): refuses it
    /// when a problem must refuse, else gives the merged facts and the warnings to record
    /// (rule problems under lenient validation, and result inconsistencies).
    fn judge(
        &self,
        job_id: &str,
        current: Option<&Facts>,
        facts: Facts,
        form: &[Problem],
    ) -> Result<(Facts, Vec<Warning>), ApiError> {
        let review = rules::review(job_id, current, facts);
        let lenient = self.limits.validation == Validation::Lenient;
        let refuses = |p: &Problem| !(lenient && p.kind.is_rule());
        if form.iter().chain(&review.problems).any(refuses) {
            return Err(ApiError::refusal([form, &review.problems].concat()));
        }
        let warnings = review.problems.into_iter().map(|p| p.violation);
        Ok((review.merged, warnings.chain(review.warnings).collect()))
    }

    /// Notes that run `job_id` has ended with the update `ended_at` (`u64::MAX`: it has
    /// not), keeping the eviction order. Called under the run's lock.
    fn set_ended(&self, slot: &Slot, job_id: &Arc<str>, ended_at: u64) {
        let before = slot.ended_at.swap(ended_at, Ordering::Relaxed);
        if before == ended_at {
            return;
        }
        let mut ended = lock(&self.ended);
        if before != u64::MAX {
            ended.remove(&before);
        }
        if ended_at != u64::MAX {
            ended.insert(ended_at, Arc::clone(job_id));
        }
    }

    /// Forgets the ended run whose last update is oldest, to make room for a new one;
    /// gives it back, for the caller to free.
    fn evict_one(&self, runs: &mut RunMap) -> Result<Arc<Slot>, ApiError> {
        let (slot, _) = self.choose_victim(runs)?;
        let mut run = lock(&slot.run);
        run.removed = true;
        drop(run);
        runs.remove(&slot.job_id());
        self.count_eviction();
        Ok(slot)
    }

    /// The ended run whose last update is oldest, taken out of the eviction order, with
    /// the key it had there; 507 when no run has ended. With a store, only a run whose
    /// gate is free is chosen, and its gate is kept for the caller.
    fn choose_victim(&self, runs: &RunMap) -> Result<(Arc<Slot>, u64), ApiError> {
        loop {
            let oldest = lock(&self.ended).pop_first();
            let Some((ended_at, job_id)) = oldest else {
                return Err(ApiError::StorageFull {
                    max_runs: self.limits.max_runs.get(),
                });
            };
            let Some(slot) = runs.get(&job_id).cloned() else {
                continue; // forgotten meanwhile
            };
            // With a store, the victim's gate is taken (its permit forgotten) for the
            // caller; a change to it being written makes it no victim for now.
            let gated = self.store.is_some();
            if gated {
                match slot.gate.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => continue,
                }
            }
            let run = lock(&slot.run);
            // A lenient update may have moved it on since it was noted: its current
            // marker, if any, is another entry.
            if slot.ended_at.load(Ordering::Relaxed) != ended_at || !run.has_ended() {
                drop(run);
                if gated {
                    slot.gate.add_permits(1);
                }
                continue;
            }
            drop(run);
            return Ok((slot, ended_at));
        }
    }

    fn count_eviction(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
        self.evicted_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Merges `judged` into `run` and makes its history entry under the next `seq`. The
    /// sequencer comes back held: the caller lets it go once the entry is published (or
    /// its write queued), so that `seq` order is publish order.
    fn sequence(
        &self,
        run: &mut Run,
        judged: Judged,
        now: DateTime<Utc>,
    ) -> (MutexGuard<'_, u64>, Entry) {
        run.merge(judged.members, judged.merged, &judged.warnings, now);
        let mut last = lock(&self.sequencer);
        *last += 1;
        let entry = Entry {
            seq: *last,
            received_at: now,
            update: judged.raw,
            warnings: judged.warnings,
            state: run.facts.state,
        };
        (last, entry)
    }

    /// Records an accepted update in its run under the next `seq`, has it witnessed, and
    /// publishes it. The status is merged first; only the history entry is written under
    /// the sequencer, so runs wait on one another no longer than that.
    fn record(&self, run: &mut Run, judged: Judged, witness: Witness<'_>) -> Accepted {
        let subscribed = self.subscribers() > 0;
        let (sequencer, entry) = self.sequence(run, judged, self.clock.now());
        let seq = entry.seq;
        let (accepted, event, _) = run.log(entry, subscribed, &self.limits);
        witness(&accepted);
        if let Some(event) = event {
            // An error means every subscriber left meanwhile: no one to tell.
            if let Some(events) = self.events.get() {
                let _ = events.send(Arc::new(event));
            }
        }
        self.published.store(seq, Ordering::Relaxed);
        drop(sequencer);
        accepted
    }

    // --- Changes with a store: applied once durable ----------------------------------

    /// [`Registry::apply_witnessed`] with a store: the update is judged against the run as
    /// it is on disk, written, and applied in memory only once the write is durable; if it
    /// cannot be written, nothing changes and the answer is 503 `storage_unavailable`.
    ///
    /// The write's outcome is handled on the store's thread, in `seq` order (so events go
    /// out in order), whether or not this future is still awaited: a client that hangs up
    /// does not leave a change half made. `witness` is called there too.
    pub async fn apply_durably(
        self: &Arc<Self>,
        job_id: Arc<str>,
        mut update: StatusUpdate,
        problems: Vec<Problem>,
        creates: Creates,
        also: Option<Write>,
        witness: DurableWitness,
    ) -> Result<Accepted, ApiError> {
        let Some(store) = self.store.clone() else {
            return Err(ApiError::Internal(
                "a durable update to a registry with no store".to_owned(),
            ));
        };
        let changes = Arc::clone(&self.changes).read_owned().await;
        let (answer, answered) = oneshot::channel();
        let mut pending = PendingParts {
            changes,
            also,
            witness,
            answer,
        };
        loop {
            let slot = read(&self.runs).get(&job_id).cloned();
            let Some(slot) = slot else {
                if creates == Creates::No {
                    return Err(no_such_run(&job_id));
                }
                match self.stage_new(&store, &job_id, update, &problems, pending) {
                    Ok(Ok(())) => break,
                    Ok(Err(refusal)) => return Err(refusal),
                    Err((appeared, parts)) => {
                        (update, pending) = (*appeared, parts);
                        continue;
                    }
                }
            };
            let Ok(permit) = slot.gate.acquire().await else {
                return Err(ApiError::Internal("a run's gate was closed".to_owned()));
            };
            let run = lock(&slot.run);
            if run.removed {
                continue; // forgotten, or its first update could not be written: look again
            }
            let judged = match self.review_known(&run, update, &problems)? {
                Review::Repeat(accepted) => return Ok(accepted),
                Review::Judged(judged) => judged,
            };
            let mut next = run.clone();
            drop(run);
            self.stage(&store, Some(&slot), &mut next, judged, None, pending);
            permit.forget();
            break;
        }
        answered.await.unwrap_or_else(|_| {
            Err(ApiError::StorageUnavailable(
                "the store's writer has stopped".to_owned(),
            ))
        })
    }

    /// Stages a new run's first update: judged, then, under the map's lock, a hidden slot
    /// for it (its gate held), and an eviction if the registry is full, all written in one.
    /// `Err` gives the update back when the run appeared meanwhile.
    #[allow(clippy::type_complexity)]
    fn stage_new(
        self: &Arc<Self>,
        store: &Arc<Store>,
        job_id: &Arc<str>,
        mut update: StatusUpdate,
        problems: &[Problem],
        pending: PendingParts,
    ) -> Result<Result<(), ApiError>, (Box<StatusUpdate>, PendingParts)> {
        let facts = std::mem::take(&mut update.facts);
        let (merged, warnings) = match self.judge(job_id, None, facts, problems) {
            Ok(judged) => judged,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut runs = write(&self.runs);
        if runs.contains_key(job_id) {
            update.facts = merged;
            return Err((Box::new(update), pending));
        }
        let victim = if runs.len() >= self.limits.max_runs.get() {
            match self.choose_victim(&runs) {
                Ok(victim) => Some(victim),
                Err(full) => return Ok(Err(full)),
            }
        } else {
            None
        };
        let now = self.clock.now();
        let mut next = Run::new(Arc::clone(job_id), now);
        let judged = Judged {
            raw: update.raw,
            members: update.members,
            merged,
            warnings,
        };
        // The seq is known only once staged; the slot is made for it there.
        let slot = self.stage(store, None, &mut next, judged, victim, pending);
        runs.insert(Arc::clone(job_id), slot);
        Ok(Ok(()))
    }

    /// Records `judged` in `next` (a copy of its run, or a new one) under the next `seq`,
    /// and queues its write, with what to do once the write is durable or has failed,
    /// while the sequencer is held, so the store sees writes in `seq` order. Gives back
    /// the run's slot: `slot`, or for a new run (`None`) a hidden one made here, its gate
    /// held.
    fn stage(
        self: &Arc<Self>,
        store: &Arc<Store>,
        slot: Option<&Arc<Slot>>,
        next: &mut Run,
        judged: Judged,
        victim: Option<(Arc<Slot>, u64)>,
        pending: PendingParts,
    ) -> Arc<Slot> {
        let now = self.clock.now();
        let (sequencer, entry) = self.sequence(next, judged, now);
        let seq = entry.seq;
        let stored = stored_entry(&next.job_id, &entry);
        let (accepted, event, trimmed) = next.log(entry, true, &self.limits);
        let created = slot.is_none();
        let slot = slot.map_or_else(
            // Hidden (no update yet) until the write is durable; its gate held meanwhile.
            || {
                Arc::new(Slot::new(
                    seq,
                    u64::MAX,
                    Run::new(Arc::clone(&next.job_id), now),
                    0,
                ))
            },
            Arc::clone,
        );
        let mut writes = vec![Write::Update {
            entry: Box::new(stored),
            run: Box::new(next.stored()),
            trimmed,
        }];
        if let Some((victim, _)) = &victim {
            writes.push(lock(&victim.run).eviction());
        }
        let PendingParts {
            changes,
            also,
            witness,
            answer,
        } = pending;
        writes.extend(also);
        let change = Pending {
            registry: Arc::clone(self),
            slot: Arc::clone(&slot),
            next: std::mem::replace(next, Run::new(Arc::clone(&next.job_id), now)),
            accepted,
            event,
            created,
            victim,
            witness,
            answer,
            _changes: changes,
        };
        store.write_then(Write::All(writes), move |outcome| change.finish(outcome));
        drop(sequencer);
        slot
    }

    /// Forgets run `job_id` once that is on disk; `false` when there was none.
    pub async fn remove_durably(self: &Arc<Self>, job_id: &str) -> Result<bool, ApiError> {
        let Some(store) = self.store.clone() else {
            return Ok(self.remove(job_id));
        };
        let changes = Arc::clone(&self.changes).read_owned().await;
        let Some(slot) = read(&self.runs).get(job_id).cloned() else {
            return Ok(false);
        };
        let Ok(permit) = slot.gate.acquire().await else {
            return Err(ApiError::Internal("a run's gate was closed".to_owned()));
        };
        let removal = {
            let run = lock(&slot.run);
            if !run.is_visible() {
                return Ok(false);
            }
            run.removal()
        };
        permit.forget();
        let (answer, answered) = oneshot::channel();
        let registry = Arc::clone(self);
        store.write_then(removal, move |outcome| {
            if outcome.is_ok() {
                registry.forget(&slot);
            }
            slot.gate.add_permits(1);
            drop(changes);
            let _ = answer.send(outcome);
        });
        match answered.await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(cause)) => Err(ApiError::StorageUnavailable(cause.to_string())),
            Err(_) => Err(ApiError::StorageUnavailable(
                "the store's writer has stopped".to_owned(),
            )),
        }
    }

    /// Forgets every run once that, and `also` with it, is on disk; then calls `then`
    /// (on the store's thread), for what else a reset clears in memory.
    pub async fn clear_durably(
        self: &Arc<Self>,
        also: Vec<Write>,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), Unavailable> {
        let Some(store) = self.store.clone() else {
            self.clear();
            then();
            return Ok(());
        };
        // Every change in flight is applied or abandoned before this is written.
        let changes = Arc::clone(&self.changes).write_owned().await;
        let (answer, answered) = oneshot::channel();
        let registry = Arc::clone(self);
        let mut writes = vec![Write::Clear];
        writes.extend(also);
        store.write_then(Write::All(writes), move |outcome| {
            if outcome.is_ok() {
                registry.clear_memory();
                then();
            }
            drop(changes);
            let _ = answer.send(outcome);
        });
        answered
            .await
            .unwrap_or_else(|_| Err(Unavailable::from("the store's writer has stopped")))
    }

    /// Removes `slot` from the map (if it is still there) and marks it forgotten.
    fn forget(&self, slot: &Arc<Slot>) {
        let mut runs = write(&self.runs);
        let job_id = slot.job_id();
        if runs
            .get(&job_id)
            .is_some_and(|held| Arc::ptr_eq(held, slot))
        {
            runs.remove(&job_id);
        }
        lock(&slot.run).removed = true;
        let ended_at = slot.ended_at.load(Ordering::Relaxed);
        if ended_at != u64::MAX {
            let mut ended = lock(&self.ended);
            if ended.get(&ended_at).is_some_and(|id| *id == job_id) {
                ended.remove(&ended_at);
            }
        }
    }

    /// The last `seq` handed out.
    pub fn last_seq(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// A receiver of every update accepted from now on, in `seq` order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<UpdateEvent>> {
        self.events
            .get_or_init(|| broadcast::channel(EVENT_BUFFER).0)
            .subscribe()
    }

    /// How many event-stream subscribers there are.
    pub fn subscribers(&self) -> usize {
        self.events
            .get()
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// The first `limit` updates still in history whose `seq` is in `after < seq <=
    /// until`, in `seq` order: a page of what a resuming event-stream client missed.
    /// Every `seq` up to [`Registry::last_seq`] is already recorded, so none in the range
    /// is missing unless `--max-history` dropped it or its run was forgotten.
    pub fn updates_between(&self, after: u64, until: u64, limit: usize) -> Vec<UpdateEvent> {
        // The `limit` smallest seqs, kept in a max-heap: each run's history is in seq
        // order, so its scan stops at the first seq past the largest kept.
        let mut page: BinaryHeap<BySeq> = BinaryHeap::new();
        for slot in self.slots() {
            let run = lock(&slot.run);
            if !run.is_visible() {
                continue;
            }
            let start = run.history.partition_point(|e| e.seq <= after);
            for entry in run.history.range(start..) {
                let full = page.len() >= limit;
                if entry.seq > until
                    || (full && page.peek().is_some_and(|top| entry.seq > top.0.seq))
                {
                    break;
                }
                page.push(BySeq(UpdateEvent {
                    job_id: Arc::clone(&run.job_id),
                    seq: entry.seq,
                    received_at: rfc3339(entry.received_at),
                    update: entry.update.clone(),
                }));
                if page.len() > limit {
                    page.pop();
                }
            }
        }
        page.into_sorted_vec()
            .into_iter()
            .map(|BySeq(event)| event)
            .collect()
    }

    /// Waits until run `job_id` exists and meets `until`, and gives it; at the timeout,
    /// the error says what the run is like then.
    ///
    /// The waiter is woken by the updates to its run, never by polling, and costs
    /// nothing while it waits; dropping the future (a client hanging up) frees it.
    pub async fn wait(
        &self,
        job_id: &str,
        until: Until,
        timeout: Duration,
    ) -> Result<RunView, WaitTimedOut> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Watch first, then look: an update between the two still wakes the waiter.
        let mut watch = self.watchers.watch(job_id);
        let since = self.last_seq();
        loop {
            if let Some(run) = self.reached(job_id, until, since) {
                return Ok(run);
            }
            if tokio::time::timeout_at(deadline, watch.changed())
                .await
                .is_err()
            {
                return Err(WaitTimedOut {
                    job_id: Arc::from(job_id),
                    until,
                    waited: timeout,
                    run: self.run(job_id),
                });
            }
        }
    }

    /// Run `job_id`, when it meets `until` now or met it with an update after `since`:
    /// a run that went through the awaited state between two looks still counts.
    fn reached(&self, job_id: &str, until: Until, since: u64) -> Option<RunView> {
        let slot = read(&self.runs).get(job_id).cloned()?;
        let run = lock(&slot.run);
        if !run.is_visible() {
            return None;
        }
        let now = until.is_met(run.facts.state);
        let passed = || {
            let start = run.history.partition_point(|e| e.seq <= since);
            run.history.range(start..).any(|e| until.is_met(e.state))
        };
        (now || passed()).then(|| run.view())
    }

    /// How many waiters are waiting, and a way to see that number change.
    pub fn waiters(&self) -> watch::Receiver<usize> {
        self.watchers.open.subscribe()
    }

    /// Runs evicted by `--max-runs` since the start, resets included.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total.load(Ordering::Relaxed)
    }

    /// The facts the rules know of run `job_id`, and its current `result` member.
    pub fn facts(&self, job_id: &str) -> Option<(Facts, Option<RawJson>)> {
        let slot = read(&self.runs).get(job_id).cloned()?;
        let run = lock(&slot.run);
        run.is_visible()
            .then(|| (run.facts.clone(), run.status.get("result").cloned()))
    }

    /// The current status of run `job_id`: Fusion's JobStatus.
    pub fn status(&self, job_id: &str) -> Option<Box<RawValue>> {
        let slot = read(&self.runs).get(job_id).cloned()?;
        let run = lock(&slot.run);
        run.is_visible().then(|| json::raw_value(run.status_json()))
    }

    /// The jobId of the latest run of config `config_id`: the one that appeared last.
    pub fn latest_run_of(&self, config_id: &str) -> Option<Arc<str>> {
        self.slots().iter().rev().find_map(|slot| {
            let run = lock(&slot.run);
            (run.is_visible() && run.facts.config_id() == Some(config_id))
                .then(|| Arc::clone(&run.job_id))
        })
    }

    /// The latest run of every config, in the order each config's first run appeared:
    /// `(config id, jobId)`.
    pub fn latest_runs(&self) -> Vec<(String, Arc<str>)> {
        let mut latest: IndexMap<String, Arc<str>> = IndexMap::new();
        for slot in self.slots() {
            let run = lock(&slot.run);
            if !run.is_visible() {
                continue;
            }
            if let Some(config_id) = run.facts.config_id() {
                latest.insert(config_id.to_owned(), Arc::clone(&run.job_id));
            }
        }
        latest.into_iter().collect()
    }

    /// How many runs are held (those whose first update is being written aside).
    pub fn held(&self) -> usize {
        self.slots()
            .iter()
            .filter(|slot| lock(&slot.run).is_visible())
            .count()
    }

    /// Whether a run `job_id` is held.
    pub fn contains(&self, job_id: &str) -> bool {
        let slot = read(&self.runs).get(job_id).cloned();
        slot.is_some_and(|slot| lock(&slot.run).is_visible())
    }

    /// How many runs are in each state; `None` counts runs no update has given a state.
    pub fn count_by_state(&self) -> Vec<(Option<JobState>, usize)> {
        let mut counts: Vec<(Option<JobState>, usize)> =
            JobState::ALL.iter().map(|s| (Some(*s), 0)).collect();
        counts.push((None, 0));
        for slot in self.slots() {
            let run = lock(&slot.run);
            if !run.is_visible() {
                continue;
            }
            if let Some(count) = counts.iter_mut().find(|(s, _)| *s == run.facts.state) {
                count.1 += 1;
            }
        }
        counts
    }

    /// Every run in the order it first appeared.
    fn slots(&self) -> Vec<Arc<Slot>> {
        let mut slots: Vec<_> = read(&self.runs).values().cloned().collect();
        slots.sort_by_key(|slot| slot.order);
        slots
    }

    /// Runs evicted by `--max-runs` since the start or the last reset.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The current status of every run, in the order they first appeared: Fusion's list.
    pub fn statuses(&self) -> Vec<Box<RawValue>> {
        self.slots()
            .iter()
            .filter_map(|slot| {
                let run = lock(&slot.run);
                run.is_visible().then(|| json::raw_value(run.status_json()))
            })
            .collect()
    }

    /// The runs matching `filter`, skipping `offset` of them and showing at most `limit`.
    pub fn list(&self, filter: &RunFilter, offset: usize, limit: Option<usize>) -> RunList {
        let mut total = 0;
        let mut runs = Vec::new();
        for slot in self.slots() {
            let run = lock(&slot.run);
            if !run.is_visible() || !filter.matches(&run.facts) {
                continue;
            }
            if total >= offset && limit.is_none_or(|limit| runs.len() < limit) {
                runs.push(run.view());
            }
            total += 1;
        }
        RunList {
            total,
            evicted: self.evicted(),
            runs,
        }
    }

    /// What a verification reads of run `job_id`: the state after each update in its
    /// history, oldest first, how many entries `--max-history` dropped, and how many
    /// updates it accepted.
    pub fn states_of(&self, job_id: &str) -> Option<SeenStates> {
        let slot = read(&self.runs).get(job_id).cloned()?;
        let run = lock(&slot.run);
        run.is_visible().then(|| SeenStates {
            states: run.history.iter().map(|entry| entry.state).collect(),
            dropped: run.dropped,
            update_count: run.update_count,
        })
    }

    pub fn run(&self, job_id: &str) -> Option<RunView> {
        let slot = read(&self.runs).get(job_id).cloned()?;
        let run = lock(&slot.run);
        run.is_visible().then(|| run.view())
    }

    pub fn history(&self, job_id: &str) -> Option<HistoryView> {
        let slot = read(&self.runs).get(job_id).cloned()?;
        let (job_id, dropped, entries) = {
            let run = lock(&slot.run);
            if !run.is_visible() {
                return None;
            }
            let entries: Vec<Entry> = run.history.iter().cloned().collect();
            (Arc::clone(&run.job_id), run.dropped, entries)
        };
        let updates = entries
            .into_iter()
            .map(|entry| HistoryEntryView {
                seq: entry.seq,
                received_at: rfc3339(entry.received_at),
                update: entry.update,
                warnings: entry.warnings,
            })
            .collect();
        Some(HistoryView {
            job_id,
            dropped,
            updates,
        })
    }

    /// Forgets one run; `false` when there was none. In memory only: with a store, use
    /// [`Registry::remove_durably`].
    pub fn remove(&self, job_id: &str) -> bool {
        debug_assert!(
            self.store.is_none(),
            "changes with a store are made durably"
        );
        // The flag is set under the map's lock: an update that found the run before it
        // went must not write to it after a new run of the same id has appeared.
        let slot = read(&self.runs).get(job_id).cloned();
        match slot {
            Some(slot) => {
                self.forget(&slot);
                true
            }
            None => false,
        }
    }

    /// Forgets every run and the count of evicted ones. `seq` goes on counting, so an
    /// update seen before the reset is never confused with one after it. In memory only:
    /// with a store, use [`Registry::clear_durably`].
    pub fn clear(&self) {
        debug_assert!(
            self.store.is_none(),
            "changes with a store are made durably"
        );
        self.clear_memory();
    }

    fn clear_memory(&self) {
        let mut runs = write(&self.runs);
        for slot in runs.values() {
            lock(&slot.run).removed = true;
        }
        runs.clear();
        lock(&self.ended).clear();
        self.evicted.store(0, Ordering::Relaxed);
    }
}

/// Whether an update may create its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creates {
    /// A client's report, or a launch: the first update of a run creates it.
    Yes,
    /// A simulated step or a cancel: only for a run that exists, so a run forgotten
    /// meanwhile stays forgotten.
    No,
}

fn no_such_run(job_id: &str) -> ApiError {
    ApiError::NotFound(format!("no run {job_id}"))
}

/// An update judged acceptable, ready to record.
struct Judged {
    raw: RawJson,
    members: Members,
    merged: Facts,
    warnings: Vec<Warning>,
}

/// What reviewing an update to a known run found.
// Moved once, on the stack: boxing the judged update would allocate for every update.
#[allow(clippy::large_enum_variant)]
enum Review {
    /// An exact repeat of its last update, and the answer it gets.
    Repeat(Accepted),
    Judged(Judged),
}

/// [`Witness`] for a change written first: called on the store's thread once the update
/// is durable and applied, before it is published.
pub type DurableWitness = Box<dyn FnOnce(&Accepted) + Send>;

/// What a durable update takes along until its write has an outcome.
struct PendingParts {
    /// Held until then, so a clear waits for it.
    changes: OwnedRwLockReadGuard<()>,
    /// Written in the same transaction (a config the update makes known).
    also: Option<Write>,
    witness: DurableWitness,
    answer: oneshot::Sender<Result<Accepted, ApiError>>,
}

/// An update written but not yet applied: what to do once its write has an outcome.
struct Pending {
    registry: Arc<Registry>,
    slot: Arc<Slot>,
    /// The run as it is once the update is applied.
    next: Run,
    accepted: Accepted,
    event: Option<UpdateEvent>,
    /// Whether `slot` was made for this update (a run's first).
    created: bool,
    /// A run evicted to make room, and its place in the eviction order.
    victim: Option<(Arc<Slot>, u64)>,
    witness: DurableWitness,
    answer: oneshot::Sender<Result<Accepted, ApiError>>,
    _changes: OwnedRwLockReadGuard<()>,
}

impl Pending {
    /// On the store's thread, in `seq` order: applies the update if it is durable, else
    /// undoes what staging it did (the hidden slot, the victim taken out of the order).
    fn finish(self, outcome: Result<(), Unavailable>) {
        let Pending {
            registry,
            slot,
            next,
            accepted,
            event,
            created,
            victim,
            witness,
            answer,
            _changes,
        } = self;
        let seq = accepted.seq;
        let answered = match outcome {
            Ok(()) => {
                let ended_at = next.ended_at(seq);
                let mut run = lock(&slot.run);
                *run = next;
                registry.set_ended(&slot, &accepted.job_id, ended_at);
                drop(run);
                if let Some((victim, _)) = &victim {
                    registry.forget(victim);
                    registry.count_eviction();
                    victim.gate.add_permits(1);
                }
                registry.watchers.notify(&accepted.job_id);
                witness(&accepted);
                if let Some(event) = event
                    && let Some(events) = registry.events.get()
                    && events.receiver_count() > 0
                {
                    let _ = events.send(Arc::new(event));
                }
                Ok(accepted)
            }
            Err(cause) => {
                if created {
                    registry.forget(&slot);
                }
                if let Some((victim, ended_at)) = &victim {
                    lock(&registry.ended).insert(*ended_at, victim.job_id());
                    victim.gate.add_permits(1);
                }
                Err(ApiError::StorageUnavailable(cause.to_string()))
            }
        };
        registry.published.store(seq, Ordering::Relaxed);
        slot.gate.add_permits(1);
        let _ = answer.send(answered);
    }
}

impl Run {
    fn new(job_id: Arc<str>, now: DateTime<Utc>) -> Self {
        Run {
            job_id,
            order: 0,
            removed: false,
            status: Members::default(),
            status_bytes: "{}".len(),
            facts: Facts::default(),
            first_update_at: now,
            last_update_at: now,
            update_count: 0,
            history: VecDeque::new(),
            dropped: 0,
            warnings: Vec::new(),
        }
    }

    /// An exact repeat of the last update: equal as JSON, whatever the key order. The
    /// last update is the last history entry (`--max-history` keeps at least one); its
    /// members are read again here rather than kept, as they would double what a run
    /// costs in memory.
    fn is_repeat(&self, update: &StatusUpdate) -> bool {
        let Some(last) = self.history.back() else {
            return false;
        };
        if last.update == update.raw {
            return true;
        }
        let Ok(last) = json::object_members(last.update.as_str()) else {
            return false;
        };
        let last: Vec<(&str, &str)> = last.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        json::members_eq(&pairs(&update.members), &last)
    }

    /// The answer to a repeat: that of the update it repeats.
    fn repeated(&self) -> Accepted {
        let (seq, warnings) = self
            .history
            .back()
            .map_or((0, Vec::new()), |last| (last.seq, last.warnings.clone()));
        self.accepted(seq, true, warnings)
    }

    fn has_ended(&self) -> bool {
        self.facts.state.is_some_and(JobState::is_ended)
    }

    fn ended_at(&self, seq: u64) -> u64 {
        if self.has_ended() { seq } else { u64::MAX }
    }

    /// How large the status would be, as JSON, with `members` merged in.
    fn status_bytes_with(&self, members: &Members) -> usize {
        let merged = members.iter().filter(|(_, value)| !value.is_null());
        merged.fold(self.status_bytes, |bytes, (name, value)| {
            let new = value.as_str().len();
            match self.status.get(name) {
                Some(old) => bytes - old.as_str().len() + new,
                None => bytes + member_bytes(name, new),
            }
        })
    }

    /// Merges an accepted update into the run: its status, facts, times and warnings.
    fn merge(
        &mut self,
        mut members: Members,
        merged: Facts,
        warnings: &[Warning],
        now: DateTime<Utc>,
    ) {
        // A null counts as absent: it neither adds a member nor erases one.
        if self.status.is_empty() {
            // A run's first update is its status: the map is taken over, not rebuilt.
            members.retain(|_, value| !value.is_null());
            self.status_bytes = members
                .iter()
                .fold(self.status_bytes, |bytes, (name, value)| {
                    bytes + member_bytes(name, value.as_str().len())
                });
            self.status = members;
            self.merge_rest(merged, warnings, now);
            return;
        }
        for (name, value) in members.iter().filter(|(_, value)| !value.is_null()) {
            // Shared with the history entry that holds the same body; copied out only if
            // that entry is dropped (see `log`).
            let value = value.clone();
            let new = value.as_str().len();
            match self.status.get_mut(name) {
                Some(existing) => {
                    self.status_bytes = self.status_bytes - existing.as_str().len() + new;
                    *existing = value;
                }
                None => {
                    self.status_bytes += member_bytes(name, new);
                    self.status.insert(name.clone(), value);
                }
            }
        }
        self.merge_rest(merged, warnings, now);
    }

    /// The rest of [`Run::merge`]: facts, times and warnings.
    fn merge_rest(&mut self, merged: Facts, warnings: &[Warning], now: DateTime<Utc>) {
        self.facts = merged;
        if self.update_count == 0 {
            self.first_update_at = now;
        }
        self.last_update_at = now;
        self.update_count += 1;
        for warning in warnings {
            if !self.warnings.contains(warning) {
                if self.warnings.len() == MAX_RUN_WARNINGS {
                    self.warnings.remove(0);
                }
                self.warnings.push(warning.clone());
            }
        }
    }

    /// Adds an accepted update's entry to the history, within `--max-history`; gives
    /// the answer, the event to publish (if `with_event`), and the seqs of the entries
    /// pushed out.
    fn log(
        &mut self,
        entry: Entry,
        with_event: bool,
        limits: &Limits,
    ) -> (Accepted, Option<UpdateEvent>, Vec<u64>) {
        let (seq, warnings) = (entry.seq, entry.warnings.clone());
        if self.order == 0 {
            self.order = seq;
        }
        let event = with_event.then(|| UpdateEvent {
            job_id: Arc::clone(&self.job_id),
            seq,
            received_at: rfc3339(entry.received_at),
            update: entry.update.clone(),
        });
        self.history.push_back(entry);
        let mut trimmed = Vec::new();
        while self.history.len() > limits.max_history.get() {
            if let Some(old) = self.history.pop_front() {
                // Status values still taken from the dropped body are copied out of it,
                // so the body is freed and memory stays bounded.
                for value in self.status.values_mut() {
                    if value.shares_doc(&old.update) {
                        *value = value.detached();
                    }
                }
                trimmed.push(old.seq);
            }
            self.dropped += 1;
        }
        (self.accepted(seq, false, warnings), event, trimmed)
    }

    /// The write that forgets this run and its history.
    fn removal(&self) -> Write {
        Write::RemoveRun {
            job_id: self.job_id.to_string(),
            seqs: self.history.iter().map(|e| e.seq).collect(),
        }
    }

    /// The write that evicts this run: forgets it and counts it.
    fn eviction(&self) -> Write {
        Write::EvictRun {
            job_id: self.job_id.to_string(),
            seqs: self.history.iter().map(|e| e.seq).collect(),
        }
    }

    /// Whether readers see the run: not forgotten, and its first update applied.
    fn is_visible(&self) -> bool {
        !self.removed && self.update_count > 0
    }

    /// The run as the store keeps it.
    fn stored(&self) -> StoredRun {
        StoredRun {
            job_id: self.job_id.to_string(),
            order: self.order,
            status: self.status_json(),
            first_update_at: rfc3339_exact(self.first_update_at),
            last_update_at: rfc3339_exact(self.last_update_at),
            update_count: self.update_count,
            dropped: self.dropped,
            warnings: self.warnings.clone(),
        }
    }

    /// A run as the store kept it.
    fn restored(stored: StoredRun, entries: Vec<StoredEntry>) -> Result<Run, String> {
        let job_id: Arc<str> = Arc::from(stored.job_id.as_str());
        let bad = |what: &str| format!("run {job_id}: its {what} cannot be read");
        let status_doc: Arc<str> = Arc::from(stored.status.as_str());
        let status = json::parse_members(&status_doc).map_err(|_| bad("status"))?;
        let status_bytes = status_doc.len();
        let facts = StatusUpdate::parse(status_doc.as_bytes())
            .map(|(update, _)| update.facts)
            .map_err(|_| bad("status"))?;
        let mut history = VecDeque::with_capacity(entries.len());
        for entry in entries {
            history.push_back(Entry {
                seq: entry.seq,
                received_at: parse_utc(&entry.received_at).ok_or_else(|| bad("history"))?,
                update: RawJson::whole(Arc::from(entry.update.as_str())),
                warnings: entry.warnings,
                state: entry.state,
            });
        }
        // The last entry is what a repeat is compared with: it must read as an object.
        if let Some(last) = history.back() {
            json::object_members(last.update.as_str()).map_err(|_| bad("history"))?;
        }
        Ok(Run {
            removed: false,
            status: status
                .into_iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| (name, value.detached()))
                .collect(),
            status_bytes,
            facts,
            first_update_at: parse_utc(&stored.first_update_at)
                .ok_or_else(|| bad("first update time"))?,
            last_update_at: parse_utc(&stored.last_update_at)
                .ok_or_else(|| bad("last update time"))?,
            update_count: stored.update_count,
            history,
            dropped: stored.dropped,
            warnings: stored.warnings,
            order: stored.order,
            job_id,
        })
    }

    fn accepted(&self, seq: u64, repeat: bool, warnings: Vec<Warning>) -> Accepted {
        Accepted {
            job_id: Arc::clone(&self.job_id),
            state: self.facts.state,
            seq,
            repeat,
            warnings,
        }
    }

    fn view(&self) -> RunView {
        RunView {
            job_id: Arc::clone(&self.job_id),
            state: self.facts.state,
            status: json::raw_value(self.status_json()),
            first_update_at: rfc3339(self.first_update_at),
            last_update_at: rfc3339(self.last_update_at),
            update_count: self.update_count,
            warnings: self.warnings.clone(),
        }
    }

    /// The current status as a JSON object: each key, then its value exactly as posted.
    fn status_json(&self) -> String {
        let mut out = String::with_capacity(self.status_bytes);
        out.push('{');
        for (i, (name, value)) in self.status.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, name);
            out.push(':');
            out.push_str(value.as_str());
        }
        out.push('}');
        out
    }
}

fn pairs(members: &Members) -> Vec<(&str, &str)> {
    members
        .iter()
        .map(|(name, value)| (name.as_ref(), value.as_str()))
        .collect()
}

/// The bytes one member adds to a status: `,"name":value`, the name escaped.
fn member_bytes(name: &str, value_len: usize) -> usize {
    let key_len = if is_plain(name) {
        name.len() + 2
    } else {
        serde_json::Value::from(name).to_string().len()
    };
    ",".len() + key_len + ":".len() + value_len
}

/// Whether a string needs no escaping in JSON.
fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

impl RunFilter {
    fn matches(&self, facts: &Facts) -> bool {
        let state_ok = match (&self.states, facts.state) {
            (None, _) => true,
            (Some(states), Some(state)) => states.contains(&state),
            (Some(_), None) => false,
        };
        state_ok
            && self
                .job_type
                .as_deref()
                .is_none_or(|t| facts.config_type() == Some(t))
            && self
                .job_config_id
                .as_deref()
                .is_none_or(|id| facts.config_id() == Some(id))
    }
}

fn push_json_string(out: &mut String, s: &str) {
    if is_plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// The waiters on each run: a `watch` channel per run someone waits for, bumped by every
/// accepted update to it.
struct Watchers {
    by_run: Mutex<HashMap<Arc<str>, watch::Sender<()>>>,
    /// How many waiters there are.
    open: watch::Sender<usize>,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            by_run: Mutex::new(HashMap::new()),
            open: watch::channel(0).0,
        }
    }
}

impl Watchers {
    fn watch(&self, job_id: &str) -> Watch<'_> {
        let receiver = lock(&self.by_run)
            .entry(Arc::from(job_id))
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        self.open.send_modify(|open| *open += 1);
        Watch {
            watchers: self,
            job_id: Arc::from(job_id),
            receiver: Some(receiver),
        }
    }

    /// Wakes the waiters on `job_id`; costs one read of the waiter count when no one waits.
    fn notify(&self, job_id: &str) {
        if *self.open.borrow() == 0 {
            return;
        }
        if let Some(sender) = lock(&self.by_run).get(job_id) {
            sender.send_replace(());
        }
    }
}

/// One waiter's registration; dropping it removes the run's channel once no one else
/// waits on it.
struct Watch<'a> {
    watchers: &'a Watchers,
    job_id: Arc<str>,
    receiver: Option<watch::Receiver<()>>,
}

impl Watch<'_> {
    async fn changed(&mut self) {
        match &mut self.receiver {
            // The sender lives as long as this receiver does, so this cannot fail.
            Some(receiver) => {
                let _ = receiver.changed().await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut by_run = lock(&self.watchers.by_run);
        drop(self.receiver.take());
        if by_run
            .get(&self.job_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            by_run.remove(&self.job_id);
        }
        drop(by_run);
        self.watchers.open.send_modify(|open| *open -= 1);
    }
}

/// A history entry as the store keeps it.
fn stored_entry(job_id: &str, entry: &Entry) -> StoredEntry {
    StoredEntry {
        job_id: job_id.to_owned(),
        seq: entry.seq,
        received_at: rfc3339_exact(entry.received_at),
        update: entry.update.as_str().to_owned(),
        warnings: entry.warnings.clone(),
        state: entry.state,
    }
}

// Some tests use a store, which needs the `persistence` feature (the default has it).
#[cfg(all(test, feature = "persistence"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::clock::ClockMode;
    use crate::model;
    use crate::store::database::{flaky, read_back};

    fn limits(max_runs: usize) -> Limits {
        Limits {
            max_runs: NonZeroUsize::new(max_runs).unwrap(),
            max_history: NonZeroUsize::new(10).unwrap(),
            max_status_bytes: NonZeroUsize::new(1 << 20).unwrap(),
            validation: Validation::Strict,
        }
    }

    fn durable(max_runs: usize, full: &Arc<AtomicBool>) -> Arc<Registry> {
        let (store, mut restored) = flaky::store(full);
        let clock = Arc::new(Clock::new(ClockMode::System));
        let registry =
            Registry::with_store(limits(max_runs), clock, Arc::new(store), &mut restored);
        Arc::new(registry.unwrap())
    }

    async fn post(registry: &Arc<Registry>, body: &str) -> Result<Accepted, ApiError> {
        let (update, problems) = StatusUpdate::parse(body.as_bytes()).unwrap();
        let job_id = update.job_id.clone().unwrap();
        let witness: DurableWitness = Box::new(|_| {});
        registry
            .apply_durably(job_id, update, problems, Creates::Yes, None, witness)
            .await
    }

    fn state(registry: &Registry, job_id: &str) -> Option<JobState> {
        registry.run(job_id).and_then(|run| run.state)
    }

    fn unavailable(outcome: Result<impl fmt::Debug, ApiError>) -> String {
        match outcome {
            Err(ApiError::StorageUnavailable(cause)) => cause,
            other => panic!("expected 503 storage_unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_change_the_store_cannot_write_is_refused_and_made_nowhere() {
        let full = Arc::new(AtomicBool::new(false));
        let registry = durable(2, &full);
        let first = post(&registry, r#"{"jobId":"r1","state":"starting"}"#)
            .await
            .unwrap();
        post(&registry, r#"{"jobId":"old","state":"finished"}"#)
            .await
            .unwrap();

        full.store(true, Ordering::SeqCst);
        let cause = unavailable(post(&registry, r#"{"jobId":"r1","state":"running"}"#).await);
        assert!(cause.contains("no space left on device"), "{cause}");
        assert_eq!(state(&registry, "r1"), Some(JobState::Starting));
        assert_eq!(registry.history("r1").unwrap().updates.len(), 1);
        // A new run that would evict "old": neither happens.
        unavailable(post(&registry, r#"{"jobId":"r2","state":"running"}"#).await);
        assert!(!registry.contains("r2"));
        assert_eq!(state(&registry, "old"), Some(JobState::Finished));
        assert_eq!(registry.evicted(), 0);
        unavailable(registry.remove_durably("r1").await);
        assert!(registry.contains("r1"));
        assert!(registry.clear_durably(Vec::new(), || {}).await.is_err());
        assert_eq!(registry.list(&RunFilter::default(), 0, None).total, 2);
        let store = registry.store().unwrap();
        assert!(store.down().is_some());
        assert!(store.errors() >= 4);
        assert_eq!(
            registry.last_seq(),
            first.seq + 3,
            "refused seqs are resolved"
        );

        // Space again: the next write succeeds, and no seq is handed out twice.
        full.store(false, Ordering::SeqCst);
        let running = post(&registry, r#"{"jobId":"r1","state":"running"}"#)
            .await
            .unwrap();
        assert!(
            running.seq > first.seq + 3,
            "seq {} was refused before",
            running.seq
        );
        assert_eq!(state(&registry, "r1"), Some(JobState::Running));
        assert!(store.down().is_none());
        post(&registry, r#"{"jobId":"r2","state":"running"}"#)
            .await
            .unwrap();
        assert!(!registry.contains("old"), "evicted now");
        assert_eq!(registry.evicted(), 1);
    }

    #[tokio::test]
    async fn waiters_and_subscribers_hear_only_of_what_is_durable() {
        let full = Arc::new(AtomicBool::new(false));
        let registry = durable(10, &full);
        let mut events = registry.subscribe();
        full.store(true, Ordering::SeqCst);
        let waiting = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                registry
                    .wait(
                        "r1",
                        Until::State(JobState::Running),
                        Duration::from_secs(30),
                    )
                    .await
            })
        };
        let mut waiters = registry.waiters();
        waiters.wait_for(|n| *n == 1).await.unwrap();
        unavailable(post(&registry, r#"{"jobId":"r1","state":"running"}"#).await);
        assert!(events.try_recv().is_err(), "no event for a refused update");
        full.store(false, Ordering::SeqCst);
        let accepted = post(&registry, r#"{"jobId":"r1","state":"running"}"#)
            .await
            .unwrap();
        let run = waiting.await.unwrap().unwrap();
        assert_eq!(run.update_count, 1);
        assert_eq!(events.recv().await.unwrap().seq, accepted.seq);
    }

    // --- In memory: bounds, repeats, waits, the event stream's backlog ---------------

    fn memory(max_runs: usize, max_history: usize, validation: Validation) -> Registry {
        let limits = Limits {
            max_history: NonZeroUsize::new(max_history).unwrap(),
            validation,
            ..limits(max_runs)
        };
        Registry::new(limits, Arc::new(Clock::new(ClockMode::System)))
    }

    fn strict(max_runs: usize, max_history: usize) -> Registry {
        memory(max_runs, max_history, Validation::Strict)
    }

    fn apply(registry: &Registry, body: &str) -> Result<Accepted, ApiError> {
        let (update, problems) = StatusUpdate::parse(body.as_bytes()).unwrap();
        let job_id = update.job_id.clone().unwrap();
        registry.apply(job_id, update, problems)
    }

    fn ok(registry: &Registry, job_id: &str, state: &str) -> Accepted {
        let body = format!(r#"{{"jobId":"{job_id}","state":"{state}"}}"#);
        apply(registry, &body).unwrap()
    }

    /// The runs held, in the order they first appeared.
    fn held(registry: &Registry) -> Vec<String> {
        let list = registry.list(&RunFilter::default(), 0, None);
        list.runs.iter().map(|run| run.job_id.to_string()).collect()
    }

    fn json(value: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn a_full_registry_evicts_the_run_that_ended_longest_ago() {
        let registry = strict(3, 10);
        ok(&registry, "a", "finished");
        ok(&registry, "b", "running");
        ok(&registry, "c", "finished");
        ok(&registry, "b", "finished"); // b appeared before c, but ended after it
        ok(&registry, "d", "starting");
        assert_eq!(held(&registry), ["b", "c", "d"], "a ended first");
        ok(&registry, "e", "starting");
        assert_eq!(held(&registry), ["b", "d", "e"], "then c");
        assert_eq!((registry.evicted(), registry.evicted_total()), (2, 2));
        registry.clear();
        assert!(held(&registry).is_empty());
        assert_eq!(
            (registry.evicted(), registry.evicted_total()),
            (0, 2),
            "the list counts since the last reset, the metrics since the start"
        );
    }

    #[test]
    fn a_registry_of_live_runs_refuses_a_new_one_and_changes_nothing() {
        let registry = strict(2, 10);
        ok(&registry, "a", "running");
        ok(&registry, "b", "starting");
        let last = registry.last_seq();
        let refused = apply(&registry, r#"{"jobId":"c","state":"starting"}"#);
        assert!(
            matches!(refused, Err(ApiError::StorageFull { max_runs: 2 })),
            "{refused:?}"
        );
        assert_eq!(held(&registry), ["a", "b"]);
        assert_eq!(registry.last_seq(), last, "no seq for a refusal");
        ok(&registry, "a", "finished");
        ok(&registry, "c", "starting");
        assert_eq!(
            held(&registry),
            ["b", "c"],
            "once a run has ended, it makes room"
        );
    }

    #[test]
    fn a_run_that_left_its_ended_state_is_no_longer_evictable() {
        let registry = memory(2, 10, Validation::Lenient);
        ok(&registry, "a", "finished");
        let moved = ok(&registry, "a", "running");
        assert_eq!(moved.warnings[0].field.as_ref(), "state", "lenient: warned");
        ok(&registry, "b", "running");
        let refused = apply(&registry, r#"{"jobId":"c","state":"starting"}"#);
        assert!(
            matches!(refused, Err(ApiError::StorageFull { .. })),
            "{refused:?}"
        );
        assert_eq!(held(&registry), ["a", "b"]);
    }

    #[test]
    fn history_keeps_the_newest_entries_and_the_status_every_field() {
        let registry = strict(10, 2);
        apply(&registry, r#"{"jobId":"a","state":"starting","first":1}"#).unwrap();
        apply(&registry, r#"{"jobId":"a","state":"running","second":2}"#).unwrap();
        let last = apply(
            &registry,
            r#"{"jobId":"a","state":"running","third":  1.50}"#,
        )
        .unwrap();
        let history = registry.history("a").unwrap();
        assert_eq!(history.dropped, 1);
        let seqs: Vec<u64> = history.updates.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [last.seq - 1, last.seq]);
        assert_eq!(
            history.updates[1].update.as_str(),
            r#"{"jobId":"a","state":"running","third":  1.50}"#
        );
        let run = registry.run("a").unwrap();
        assert_eq!(run.update_count, 3);
        assert_eq!(
            run.status.get(),
            r#"{"jobId":"a","state":"running","first":1,"second":2,"third":1.50}"#,
            "merged at the top level, each value as posted, a dropped entry's too"
        );
    }

    #[test]
    fn a_merged_status_may_not_outgrow_its_bound() {
        let limits = Limits {
            max_status_bytes: NonZeroUsize::new(64).unwrap(),
            ..limits(10)
        };
        let registry = Registry::new(limits, Arc::new(Clock::new(ClockMode::System)));
        ok(&registry, "a", "running");
        let padded = format!(r#"{{"jobId":"a","pad":"{}"}}"#, "x".repeat(40));
        let refused = apply(&registry, &padded);
        assert!(
            matches!(refused, Err(ApiError::PayloadTooLarge(_))),
            "{refused:?}"
        );
        assert_eq!(
            registry.run("a").unwrap().update_count,
            1,
            "nothing changed"
        );
    }

    #[test]
    fn an_exact_repeat_is_the_update_it_repeats_however_it_is_spelt() {
        let registry = strict(10, 10);
        let first = apply(
            &registry,
            r#"{"jobId":"a","state":"finished","result":{"x":1,"y":[1,2]}}"#,
        )
        .unwrap();
        let last_seq = registry.last_seq();
        let again = apply(
            &registry,
            r#" { "result" : {"y":[1, 2],"x":1.0}, "state":"finished", "jobId":"a" } "#,
        )
        .unwrap();
        assert!(again.repeat);
        assert_eq!(again.seq, first.seq, "the seq it repeats");
        assert_eq!(registry.last_seq(), last_seq, "no new seq");
        assert_eq!(registry.history("a").unwrap().updates.len(), 1);
        assert_eq!(registry.run("a").unwrap().update_count, 1);
        // Not a repeat: a different value, which an ended run refuses.
        let changed = apply(
            &registry,
            r#"{"jobId":"a","state":"finished","result":{"x":2}}"#,
        );
        assert!(
            matches!(changed, Err(ApiError::InvalidTransition { .. })),
            "{changed:?}"
        );
    }

    #[test]
    fn only_the_last_update_can_be_repeated() {
        let registry = strict(10, 10);
        let starting = ok(&registry, "a", "starting");
        ok(&registry, "a", "running");
        let earlier = apply(&registry, r#"{"jobId":"a","state":"starting"}"#);
        assert!(
            matches!(earlier, Err(ApiError::InvalidTransition { .. })),
            "running -> starting: {earlier:?}"
        );
        assert_eq!(registry.history("a").unwrap().updates[0].seq, starting.seq);
    }

    #[tokio::test]
    async fn a_wait_counts_a_state_the_run_only_passed_through() {
        let registry = Arc::new(strict(10, 10));
        let waiting = {
            let registry = Arc::clone(&registry);
            let running = Until::State(JobState::Running);
            tokio::spawn(async move { registry.wait("a", running, Duration::from_secs(30)).await })
        };
        registry.waiters().wait_for(|n| *n == 1).await.unwrap();
        // Both before the waiter looks again: it finds the run finished, and running in
        // its history since it began to wait.
        ok(&registry, "a", "running");
        ok(&registry, "a", "finished");
        let run = waiting.await.unwrap().unwrap();
        assert_eq!(run.state, Some(JobState::Finished));
        assert_eq!(
            *registry.waiters().borrow(),
            0,
            "a finished wait is forgotten"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ignores_what_the_run_went_through_before_it_began() {
        let registry = strict(10, 10);
        ok(&registry, "a", "running");
        ok(&registry, "a", "finished");
        let timed_out = registry
            .wait("a", Until::State(JobState::Running), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(timed_out.waited, Duration::from_secs(5));
        assert_eq!(
            timed_out.to_string(),
            "run a did not reach state running within 5s; it is finished"
        );
        let ended = registry
            .wait("a", Until::Ended, Duration::from_secs(5))
            .await;
        assert_eq!(ended.unwrap().state, Some(JobState::Finished), "at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_a_run_that_never_comes_says_so() {
        let registry = strict(10, 10);
        let timed_out = registry
            .wait("ghost", Until::Ended, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(timed_out.run.is_none());
        assert_eq!(
            timed_out.to_string(),
            "run ghost did not end within 300ms; it does not exist"
        );
        assert_eq!(*registry.waiters().borrow(), 0);
    }

    #[tokio::test]
    async fn a_wait_for_a_run_that_appears_later_ends_when_it_meets_the_state() {
        let registry = Arc::new(strict(10, 10));
        let waiting = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                registry
                    .wait("late", Until::Ended, Duration::from_secs(30))
                    .await
            })
        };
        registry.waiters().wait_for(|n| *n == 1).await.unwrap();
        ok(&registry, "other", "error");
        ok(&registry, "late", "running");
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "running has not ended");
        ok(&registry, "late", "error");
        let run = waiting.await.unwrap().unwrap();
        assert_eq!((&*run.job_id, run.state), ("late", Some(JobState::Error)));
    }

    #[test]
    fn the_backlog_is_every_update_still_held_in_seq_order_page_by_page() {
        let registry = strict(10, 2);
        for (job_id, state) in [
            ("a", "starting"),
            ("b", "starting"),
            ("a", "running"),
            ("b", "running"),
            ("a", "finished"),
        ] {
            ok(&registry, job_id, state);
        }
        let seqs = |after, until, limit| -> Vec<(String, u64)> {
            registry
                .updates_between(after, until, limit)
                .iter()
                .map(|event| (event.job_id.to_string(), event.seq))
                .collect()
        };
        let held = |list: &[(&str, u64)]| -> Vec<(String, u64)> {
            list.iter()
                .map(|(id, seq)| ((*id).to_owned(), *seq))
                .collect()
        };
        // Seq 1 was a's first, dropped by --max-history 2.
        assert_eq!(
            seqs(0, 5, 10),
            held(&[("b", 2), ("a", 3), ("b", 4), ("a", 5)])
        );
        assert_eq!(
            seqs(2, 4, 10),
            held(&[("a", 3), ("b", 4)]),
            "after < seq <= until"
        );
        assert_eq!(seqs(0, 5, 2), held(&[("b", 2), ("a", 3)]), "the first page");
        assert_eq!(seqs(3, 5, 2), held(&[("b", 4), ("a", 5)]), "the next");
        assert!(seqs(5, 5, 2).is_empty());
        let event = &registry.updates_between(4, 5, 1)[0];
        assert_eq!(event.update.as_str(), r#"{"jobId":"a","state":"finished"}"#);
        assert!(model::time::parse_utc(&event.received_at).is_some());
        assert!(registry.remove("b"));
        assert_eq!(
            seqs(0, 5, 10),
            held(&[("a", 3), ("a", 5)]),
            "b is forgotten"
        );
    }

    // --- Restored from a store --------------------------------------------------------

    /// What the store would hold for `registry`'s runs, as its writes.
    fn written(registry: &Registry, evicted: &[&str]) -> Vec<Write> {
        let mut writes = Vec::new();
        for slot in registry.slots() {
            let run = lock(&slot.run);
            for entry in &run.history {
                writes.push(Write::Update {
                    entry: Box::new(stored_entry(&run.job_id, entry)),
                    run: Box::new(run.stored()),
                    trimmed: Vec::new(),
                });
            }
        }
        for job_id in evicted {
            writes.push(Write::EvictRun {
                job_id: (*job_id).to_owned(),
                seqs: Vec::new(),
            });
        }
        writes
    }

    #[tokio::test]
    async fn a_registry_restored_from_its_store_is_the_one_that_wrote_it() {
        let limits = Limits {
            max_history: NonZeroUsize::new(2).unwrap(),
            ..limits(3)
        };
        let before = Registry::new(limits, Arc::new(Clock::new(ClockMode::System)));
        for body in [
            r#"{"jobId":"r1","state":"starting"}"#,
            r#"{"jobId":"r1","state":"running","startTime":"2026-01-01T00:00:00Z"}"#,
            r#"{"jobId":"r1","state":"finished","n":123456789012345678901234567890}"#,
            r#"{"jobId":"r2","state":"finished","result":{"jobRunId":"other"}}"#,
            r#"{"jobId":"r3","state":"running"}"#,
            r#"{"jobId":"r4","state":"starting"}"#,
        ] {
            apply(&before, body).unwrap();
        }
        assert_eq!(held(&before), ["r2", "r3", "r4"], "r1 was evicted");
        ok(&before, "r4", "running"); // a second run's history, kept whole

        let mut restored = read_back(written(&before, &["r1"])).unwrap();
        let full = Arc::new(AtomicBool::new(false));
        let (store, _) = flaky::store(&full);
        let clock = Arc::new(Clock::new(ClockMode::System));
        let after =
            Arc::new(Registry::with_store(limits, clock, Arc::new(store), &mut restored).unwrap());

        let all = |registry: &Registry| json(&registry.list(&RunFilter::default(), 0, None));
        assert_eq!(all(&after), all(&before), "runs, statuses, times, warnings");
        for job_id in ["r2", "r3", "r4"] {
            let history = |registry: &Registry| json(&registry.history(job_id).unwrap());
            assert_eq!(history(&after), history(&before), "{job_id}");
        }
        assert_eq!(after.last_seq(), before.last_seq());
        assert_eq!(after.evicted(), 1);

        // It goes on where it stopped: a repeat is recognized, seq is not handed out
        // twice, and the run that ended longest ago is evicted first.
        let repeat = post(&after, r#"{"jobId":"r3","state":"running"}"#)
            .await
            .unwrap();
        assert!(repeat.repeat);
        let next = post(&after, r#"{"jobId":"r5","state":"starting"}"#)
            .await
            .unwrap();
        assert_eq!(next.seq, before.last_seq() + 1);
        assert_eq!(
            held(&after),
            ["r3", "r4", "r5"],
            "r2, the only ended run, made room"
        );
        assert_eq!(after.evicted(), 2);
    }
}
