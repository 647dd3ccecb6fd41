//! Persistence with `--data-dir`: an embedded redb database the registry, scenarios,
//! configs and fault rules are written to, and read back from at start. It keeps records
//! and says when they are durable; what a change means, and when it may be made, the
//! registry and the others decide.
//!
//! Writes go to one writer thread through a queue, in the order they were made. The
//! thread takes every write waiting, applies them in one transaction and commits it with
//! an fsync: concurrent writers share a sync instead of paying one each. Each write
//! carries what to do with its outcome, which the writer calls in queue order once the
//! commit is durable or has failed: a change is applied in memory only then, so nothing
//! is acknowledged that is not on disk (the contract's "failing closed").
//!
//! A failed commit fails every write in it; the writer reopens the database for the next
//! one (redb refuses writes on a handle that saw an I/O error), reports itself down until
//! a write succeeds, and tries by itself every second meanwhile.
//!
//! What is kept: each run's current status and bookkeeping (one row per run, rewritten
//! with each update) and its history (one row per update, keyed by `seq`); the last `seq`
//! handed out and the count of evicted runs; the scenarios, configs and rules as JSON
//! documents. The journal, simulated runs' pending steps and fault hit counts since the
//! last change are not.

//!
//! This module is the queue, the writer's protocol and what is kept; `database` (with the
//! `persistence` feature, which the binary has) is the database itself. Built without it,
//! no store can be opened, and everything stays in memory.

#[cfg(feature = "persistence")]
pub(crate) mod database;

#[cfg(feature = "persistence")]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::sync::{self, lock};

/// A history entry as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEntry {
    pub job_id: String,
    pub seq: u64,
    /// RFC 3339, to the nanosecond.
    pub received_at: String,
    /// The update exactly as posted.
    pub update: String,
    pub warnings: Vec<crate::model::Warning>,
    /// The run's state once the update was merged.
    pub state: Option<crate::model::JobState>,
}

/// A run's current status and bookkeeping as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRun {
    pub job_id: String,
    pub order: u64,
    /// The current status, as the API shows it.
    pub status: String,
    pub first_update_at: String,
    pub last_update_at: String,
    pub update_count: u64,
    pub dropped: u64,
    pub warnings: Vec<crate::model::Warning>,
}

/// One change to write.
#[derive(Debug)]
pub enum Write {
    /// An accepted update: its entry, its run as it is now, the entries it pushed out.
    Update {
        entry: Box<StoredEntry>,
        run: Box<StoredRun>,
        trimmed: Vec<u64>,
    },
    /// A run forgotten, with its history.
    RemoveRun { job_id: String, seqs: Vec<u64> },
    /// A run evicted by `--max-runs`: forgotten, and counted.
    EvictRun { job_id: String, seqs: Vec<u64> },
    /// Every run forgotten.
    Clear,
    /// A document by name: `scenarios`, `configs`, `faults`.
    Document { name: &'static str, json: String },
    /// Several changes that stand or fall together, in this order.
    All(Vec<Write>),
    /// A change to a session's world (see [`Store::scoped`]).
    Scoped { scope: Arc<str>, write: Box<Write> },
    /// A session made: how (its `json`), so a restart makes it again.
    SessionCreated { id: String, json: String },
    /// A session forgotten, with everything its world kept.
    SessionDeleted { id: String },
}

/// Why a change could not be stored: the cause, as the 503 `storage_unavailable` and the
/// health probes say it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(Arc<str>);

impl From<&str> for Unavailable {
    fn from(cause: &str) -> Self {
        Unavailable(Arc::from(cause))
    }
}

/// What the writer calls, once, with the outcome of a write: from the writer thread, in
/// the order the writes were queued.
type Done = Box<dyn FnOnce(Result<(), Unavailable>) + Send>;

/// A queued write and what to call with its outcome. Dropped uncalled (the writer has
/// stopped), it reports the write as failed, so no one waits for it forever.
// Read by the writer thread, which exists only with the `persistence` feature.
#[cfg_attr(not(feature = "persistence"), allow(dead_code))]
struct Message {
    write: Write,
    done: Option<Done>,
}

#[cfg_attr(not(feature = "persistence"), allow(dead_code))]
impl Message {
    fn finish(mut self, outcome: Result<(), Unavailable>) -> Write {
        if let Some(done) = self.done.take() {
            done(outcome);
        }
        std::mem::replace(&mut self.write, Write::All(Vec::new()))
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(Unavailable(Arc::from(
                "the store's writer has stopped",
            ))));
        }
    }
}

/// What a data directory held at start.
#[derive(Debug, Default)]
pub struct Restored {
    /// Runs in the order they first appeared, each with its history, oldest first.
    pub runs: Vec<(StoredRun, Vec<StoredEntry>)>,
    pub last_seq: u64,
    pub evicted: u64,
    pub scenarios: Option<String>,
    pub configs: Option<String>,
    pub faults: Option<String>,
    /// The sessions, each with what its world held (the service's own world only).
    pub sessions: Vec<RestoredSession>,
}

/// A session as a data directory held it.
#[derive(Debug, Default)]
pub struct RestoredSession {
    pub id: String,
    /// How it was made: its `json` when written.
    pub meta: String,
    pub data: Restored,
}

/// A data directory that cannot be used at start, and why: each cause its own message,
/// naming the path.
#[cfg(feature = "persistence")]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data directory {dir}: {file} is locked by another process; is another \
         job-launcher-mock running with this --data-dir? Stop it, or give this one another \
         directory"
    )]
    Locked { dir: PathBuf, file: PathBuf },
    #[error("data directory {dir}: permission denied {doing} ({cause}); {advice}")]
    Permission {
        dir: PathBuf,
        doing: String,
        cause: std::io::Error,
        advice: String,
    },
    #[error(
        "data directory {dir}: {file} is corrupt ({cause}); move it away to start with an \
         empty registry, or restore it from a backup"
    )]
    Corrupt {
        dir: PathBuf,
        file: PathBuf,
        cause: String,
    },
    #[error("data directory {dir}: {reason}")]
    Other { dir: PathBuf, reason: String },
}

/// Whether the store can write, and how often it could not.
#[derive(Debug, Default)]
struct Health {
    /// Why the last write failed, until one succeeds again.
    down: Mutex<Option<Unavailable>>,
    errors: AtomicU64,
}

#[cfg_attr(not(feature = "persistence"), allow(dead_code))]
impl Health {
    fn fail(&self, cause: &Unavailable) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut down = lock(&self.down);
        if down.is_none() {
            tracing::error!(reason = %cause, "the data directory cannot be written; changes are refused (503) until it can");
        }
        *down = Some(cause.clone());
    }

    fn recover(&self) {
        if lock(&self.down).take().is_some() {
            tracing::info!("the data directory can be written again");
        }
    }

    fn is_down(&self) -> bool {
        lock(&self.down).is_some()
    }
}

pub struct Store {
    queue: mpsc::Sender<Message>,
    health: Arc<Health>,
    /// The session whose world this handle writes for; `None` for the service's own.
    scope: Option<Arc<str>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Queues a write; `done` is called with its outcome once it is durable or has failed,
    /// from the writer thread, in the order writes were queued.
    pub fn write_then(
        &self,
        write: Write,
        done: impl FnOnce(Result<(), Unavailable>) + Send + 'static,
    ) {
        let write = match &self.scope {
            Some(scope) => Write::Scoped {
                scope: Arc::clone(scope),
                write: Box::new(write),
            },
            None => write,
        };
        // A send fails only when the writer has stopped: the message, dropped, reports it.
        let _ = self.queue.send(Message {
            write,
            done: Some(Box::new(done)),
        });
    }

    /// A handle on the same store that keeps what it is given as session `id`'s: its
    /// world's runs and documents apart from every other's.
    pub fn scoped(&self, id: &str) -> Store {
        Store {
            queue: self.queue.clone(),
            health: Arc::clone(&self.health),
            scope: Some(Arc::from(id)),
        }
    }

    /// Writes `write`; resolves once it is durable, or with why it could not be.
    pub async fn write(&self, write: Write) -> Result<(), Unavailable> {
        let (sender, outcome) = oneshot::channel();
        self.write_then(write, move |result| {
            let _ = sender.send(result);
        });
        outcome
            .await
            .unwrap_or_else(|_| Err(Unavailable(Arc::from("the store's writer has stopped"))))
    }

    /// Why the store cannot write now; `None` while it can (as far as its last write knows).
    pub fn down(&self) -> Option<Unavailable> {
        lock(&self.health.down).clone()
    }

    /// How many writes have failed since the start.
    pub fn errors(&self) -> u64 {
        self.health.errors.load(Ordering::Relaxed)
    }
}

/// A value kept in memory and, with `--data-dir`, as one named document of the store
/// (scenarios, configs). A change is made to a copy, which replaces the value once the
/// copy's document is durable: a change the store cannot keep is not made.
pub struct Saved<T> {
    inner: Arc<SavedInner<T>>,
}

struct SavedInner<T> {
    value: std::sync::RwLock<T>,
    /// One change at a time, from taking the copy to replacing the value with it.
    writes: Arc<tokio::sync::Mutex<()>>,
    store: Option<(Arc<Store>, &'static str)>,
    render: fn(&T) -> String,
}

impl<T: Clone + Send + Sync + 'static> Saved<T> {
    /// A value in memory only.
    pub fn new(value: T, render: fn(&T) -> String) -> Self {
        Saved::with(value, None, render)
    }

    /// A value saved as document `name` of `store` on every change.
    pub fn persisted(
        value: T,
        store: Arc<Store>,
        name: &'static str,
        render: fn(&T) -> String,
    ) -> Self {
        Saved::with(value, Some((store, name)), render)
    }

    fn with(value: T, store: Option<(Arc<Store>, &'static str)>, render: fn(&T) -> String) -> Self {
        Saved {
            inner: Arc::new(SavedInner {
                value: std::sync::RwLock::new(value),
                writes: Arc::new(tokio::sync::Mutex::new(())),
                store,
                render,
            }),
        }
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, T> {
        sync::read(&self.inner.value)
    }

    /// Makes `change`, and gives what it returns; with a store, only once the changed
    /// value is on disk (the change runs to its end even if the caller goes away).
    pub async fn change<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        if self.inner.store.is_none() {
            return Ok(self.change_now(change));
        }
        let inner = Arc::clone(&self.inner);
        detached(async move {
            let lock = SavedLock::take(inner).await;
            let mut copy = lock.value();
            let result = change(&mut copy);
            if let Some((store, write)) = lock.document(&copy) {
                store.write(write).await?;
            }
            lock.install(copy);
            Ok(result)
        })
        .await
    }

    /// Makes `change` at once, in memory only: for a value without a store.
    pub fn change_now<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        debug_assert!(
            self.inner.store.is_none(),
            "changes with a store are made durably"
        );
        change(&mut sync::write(&self.inner.value))
    }

    /// Takes the right to change the value, for a change written along with others.
    pub async fn lock(&self) -> SavedLock<T> {
        SavedLock::take(Arc::clone(&self.inner)).await
    }
}

/// The right to change a [`Saved`] value, held until [`SavedLock::install`] or drop.
pub struct SavedLock<T> {
    inner: Arc<SavedInner<T>>,
    _one: tokio::sync::OwnedMutexGuard<()>,
}

impl<T: Clone> SavedLock<T> {
    async fn take(inner: Arc<SavedInner<T>>) -> Self {
        let one = Arc::clone(&inner.writes).lock_owned().await;
        SavedLock { inner, _one: one }
    }

    /// A copy of the value, to change.
    pub fn value(&self) -> T {
        sync::read(&self.inner.value).clone()
    }

    /// The write that saves `value`, and where; `None` without a store.
    pub fn document(&self, value: &T) -> Option<(Arc<Store>, Write)> {
        self.inner.store.as_ref().map(|(store, name)| {
            let json = (self.inner.render)(value);
            (Arc::clone(store), Write::Document { name, json })
        })
    }

    /// Replaces the value: once its document is durable.
    pub fn install(self, value: T) {
        *sync::write(&self.inner.value) = value;
    }
}

/// Runs `change` as a task of its own and waits for it: once a write is queued, what it
/// changes in memory must follow its outcome even if the request that asked goes away.
pub async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    match tokio::spawn(change).await {
        Ok(outcome) => outcome,
        Err(failed) => match failed.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled only as the runtime shuts down, when no one waits for this.
            Err(_) => std::future::pending().await,
        },
    }
}
