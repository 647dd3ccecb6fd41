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

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::sync::{self, lock};

/// History entries, by `seq`.
const UPDATES: TableDefinition<u64, &[u8]> = TableDefinition::new("updates");
/// Runs' current status and bookkeeping, by jobId.
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
/// Everything else, by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The format this version writes and reads; another is refused at start.
const FORMAT: &str = "job-launcher-mock/1";
const FILE: &str = "job-launcher-mock.redb";

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
struct Message {
    write: Write,
    done: Option<Done>,
}

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
}

/// A data directory that cannot be used at start, and why: each cause its own message,
/// naming the path.
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`, reads what it holds, and starts the
    /// writer thread.
    pub fn open(dir: &Path) -> Result<(Store, Restored), StoreError> {
        let other = |reason: String| StoreError::Other {
            dir: dir.to_owned(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| match e.kind() {
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                permission(dir, "creating it", e)
            }
            _ => other(format!("cannot create it: {e}")),
        })?;
        let path = dir.join(FILE);
        let existed = path.exists();
        let opener: Opener = {
            let path = path.clone();
            Box::new(move || Database::create(&path))
        };
        Store::open_with(dir, path, existed, opener)
    }

    /// [`Store::open`] with the database `opener` opens (again after a failed write): a
    /// file, or for tests a backend that fails on demand.
    pub(crate) fn open_with(
        dir: &Path,
        path: PathBuf,
        existed: bool,
        opener: Opener,
    ) -> Result<(Store, Restored), StoreError> {
        let other = |reason: String| StoreError::Other {
            dir: dir.to_owned(),
            reason,
        };
        let db = opener().map_err(|e| open_error(dir, &path, e))?;
        let corrupt = |cause: String| StoreError::Corrupt {
            dir: dir.to_owned(),
            file: path.clone(),
            cause,
        };
        if existed {
            check_format(&db).map_err(other)?;
        } else {
            write_format(&db).map_err(other)?;
        }
        let restored = read(&db).map_err(corrupt)?;
        let (queue, received) = mpsc::channel();
        let health = Arc::new(Health::default());
        let writer = Writer {
            db: Some(db),
            opener,
            path,
            health: Arc::clone(&health),
        };
        thread::Builder::new()
            .name("jlm-store".to_owned())
            .spawn(move || writer.run(&received))
            .map_err(|e| other(format!("cannot start the writer: {e}")))?;
        Ok((Store { queue, health }, restored))
    }

    /// Queues a write; `done` is called with its outcome once it is durable or has failed,
    /// from the writer thread, in the order writes were queued.
    pub fn write_then(
        &self,
        write: Write,
        done: impl FnOnce(Result<(), Unavailable>) + Send + 'static,
    ) {
        // A send fails only when the writer has stopped: the message, dropped, reports it.
        let _ = self.queue.send(Message {
            write,
            done: Some(Box::new(done)),
        });
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

/// A start-up error for an `io` error with a permission kind.
fn permission(dir: &Path, doing: &str, cause: std::io::Error) -> StoreError {
    let me =
        process_uid().map_or_else(String::new, |uid| format!("this process runs as uid {uid}"));
    let owner = std::fs::metadata(dir).ok().map(|m| {
        format!(
            "{} is owned by uid {} (mode {:o})",
            dir.display(),
            m.uid(),
            m.mode() & 0o7777
        )
    });
    let advice = match (me.is_empty(), owner) {
        (false, Some(owner)) => {
            format!("{me} and {owner}: run as that user, or give the directory to this one (chown)")
        }
        _ => "give this process's user read and write access to it".to_owned(),
    };
    StoreError::Permission {
        dir: dir.to_owned(),
        doing: doing.to_owned(),
        cause,
        advice,
    }
}

/// The uid this process runs as: the owner of `/proc/self`.
fn process_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Says which of locked, not permitted or corrupt a database that will not open is.
fn open_error(dir: &Path, path: &Path, error: redb::DatabaseError) -> StoreError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            dir: dir.to_owned(),
            file: path.to_owned(),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if matches!(
                e.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            permission(dir, &format!("opening {}", path.display()), e)
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == ErrorKind::InvalidData =>
        {
            StoreError::Corrupt {
                dir: dir.to_owned(),
                file: path.to_owned(),
                cause: e.to_string(),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(cause)) => StoreError::Corrupt {
            dir: dir.to_owned(),
            file: path.to_owned(),
            cause,
        },
        other => StoreError::Other {
            dir: dir.to_owned(),
            reason: format!("cannot open {}: {other}", path.display()),
        },
    }
}

fn check_format(db: &Database) -> Result<(), String> {
    let read = db.begin_read().map_err(|e| format!("cannot read: {e}"))?;
    let format = match read.open_table(META) {
        Ok(meta) => meta
            .get("format")
            .map_err(|e| format!("cannot read: {e}"))?
            .map(|value| String::from_utf8_lossy(value.value()).into_owned()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    match format.as_deref() {
        Some(FORMAT) => Ok(()),
        Some(other) => Err(format!(
            "it was written in format {other:?}, and this version reads only {FORMAT:?}; \
             start with an empty --data-dir, or the version that wrote it"
        )),
        None => Err(format!(
            "{FILE} is not a job-launcher-mock database (it has no format marker)"
        )),
    }
}

fn write_format(db: &Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| format!("cannot write: {e}"))?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| format!("cannot write: {e}"))?;
        meta.insert("format", FORMAT.as_bytes())
            .map_err(|e| format!("cannot write: {e}"))?;
        txn.open_table(UPDATES)
            .map_err(|e| format!("cannot write: {e}"))?;
        txn.open_table(RUNS)
            .map_err(|e| format!("cannot write: {e}"))?;
    }
    txn.commit().map_err(|e| format!("cannot write: {e}"))
}

fn read(db: &Database) -> Result<Restored, String> {
    let txn = db.begin_read().map_err(|e| format!("cannot read: {e}"))?;
    let runs_table = txn
        .open_table(RUNS)
        .map_err(|e| format!("cannot read runs: {e}"))?;
    let updates = txn
        .open_table(UPDATES)
        .map_err(|e| format!("cannot read updates: {e}"))?;
    let meta = txn
        .open_table(META)
        .map_err(|e| format!("cannot read: {e}"))?;
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| format!("a {what} record is corrupt: {e}");
    let mut runs: Vec<(StoredRun, Vec<StoredEntry>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for row in runs_table.iter().map_err(|e| corrupt("run", &e))? {
        let (_, value) = row.map_err(|e| corrupt("run", &e))?;
        let run: StoredRun =
            serde_json::from_slice(value.value()).map_err(|e| corrupt("run", &e))?;
        runs.push((run, Vec::new()));
    }
    runs.sort_by_key(|(run, _)| run.order);
    for (i, (run, _)) in runs.iter().enumerate() {
        index.insert(run.job_id.clone(), i);
    }
    let mut last_seq = 0;
    for row in updates.iter().map_err(|e| corrupt("history", &e))? {
        let (seq, value) = row.map_err(|e| corrupt("history", &e))?;
        let entry: StoredEntry =
            serde_json::from_slice(value.value()).map_err(|e| corrupt("history", &e))?;
        last_seq = last_seq.max(seq.value());
        match index.get(&entry.job_id) {
            Some(&i) => runs[i].1.push(entry),
            None => {
                return Err(corrupt(
                    "history",
                    &format!("seq {} has no run", seq.value()),
                ));
            }
        }
    }
    let document = |name: &str| -> Result<Option<String>, String> {
        let value = meta.get(name).map_err(|e| corrupt(name, &e))?;
        Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    };
    let evicted = match document("evicted")? {
        Some(text) => text.parse().map_err(|e| corrupt("evicted", &e))?,
        None => 0,
    };
    let last_seq = match document("lastSeq")? {
        Some(text) => last_seq.max(text.parse().map_err(|e| corrupt("lastSeq", &e))?),
        None => last_seq,
    };
    Ok(Restored {
        runs,
        last_seq,
        evicted,
        scenarios: document("scenarios")?,
        configs: document("configs")?,
        faults: document("faults")?,
    })
}

/// How often a store that cannot write tries again while no change asks it to.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The writer thread's side: the database (closed after a failed write, which leaves
/// redb's handle unusable, and opened again for the next) and the health it reports.
struct Writer {
    db: Option<Database>,
    opener: Opener,
    path: PathBuf,
    health: Arc<Health>,
}

/// Opens the database.
pub(crate) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send>;

impl Writer {
    /// Each round takes every message waiting, writes them in one transaction, commits
    /// (an fsync), then tells each its outcome, in order. While the store cannot write, it
    /// tries again every [`RETRY_EVERY`] by itself, so health comes back without a client.
    fn run(mut self, queue: &mpsc::Receiver<Message>) {
        loop {
            let first = if self.health.is_down() {
                match queue.recv_timeout(RETRY_EVERY) {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let _ = self.attempt(Vec::new());
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match queue.recv() {
                    Ok(message) => message,
                    Err(mpsc::RecvError) => return,
                }
            };
            let mut batch = vec![first];
            batch.extend(queue.try_iter());
            let writes: Vec<Write> = batch
                .iter_mut()
                .map(|m| std::mem::replace(&mut m.write, Write::All(Vec::new())))
                .collect();
            let outcome = self.attempt(writes);
            for message in batch {
                message.finish(outcome.clone());
            }
        }
    }

    /// Commits `writes` in one transaction (with none, a probe that the store can write).
    fn attempt(&mut self, writes: Vec<Write>) -> Result<(), Unavailable> {
        let outcome = self.commit(writes);
        match &outcome {
            Ok(()) => self.health.recover(),
            Err(cause) => {
                // redb refuses every later write on a handle that saw an I/O error.
                self.db = None;
                self.health.fail(cause);
            }
        }
        outcome
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<(), Unavailable> {
        let probe = writes.is_empty();
        let outcome = match &self.db {
            Some(db) => commit(db, writes, probe),
            None => (self.opener)()
                .map_err(cause)
                .and_then(|db| commit(self.db.insert(db), writes, probe)),
        };
        outcome.map_err(|e| {
            Unavailable(Arc::from(format!(
                "cannot write to {}: {}",
                self.path.display(),
                lowercase_first(&e)
            )))
        })
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Writes `writes` in one transaction and commits it; with `probe`, also a marker, so an
/// empty round still proves the store can write. The error is the cause in words.
fn commit(db: &Database, writes: Vec<Write>, probe: bool) -> Result<(), String> {
    let txn = db.begin_write().map_err(cause)?;
    {
        let mut tables = Tables {
            updates: txn.open_table(UPDATES).map_err(cause)?,
            runs: txn.open_table(RUNS).map_err(cause)?,
            meta: txn.open_table(META).map_err(cause)?,
        };
        for write in writes {
            tables.apply(write)?;
        }
        if probe {
            let now = crate::model::time::rfc3339(chrono::Utc::now());
            tables
                .meta
                .insert("probedAt", now.as_bytes())
                .map_err(cause)?;
        }
    }
    txn.commit().map_err(cause)
}

/// The tables of one write transaction.
struct Tables<'t> {
    updates: redb::Table<'t, u64, &'static [u8]>,
    runs: redb::Table<'t, &'static str, &'static [u8]>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
}

impl Tables<'_> {
    fn apply(&mut self, write: Write) -> Result<(), String> {
        match write {
            Write::Update {
                entry,
                run,
                trimmed,
            } => {
                self.updates
                    .insert(entry.seq, to_json(&entry)?.as_slice())
                    .map_err(cause)?;
                self.meta
                    .insert("lastSeq", entry.seq.to_string().as_bytes())
                    .map_err(cause)?;
                self.runs
                    .insert(run.job_id.as_str(), to_json(&run)?.as_slice())
                    .map_err(cause)?;
                self.remove_updates(trimmed)?;
            }
            Write::RemoveRun { job_id, seqs } => {
                self.runs.remove(job_id.as_str()).map_err(cause)?;
                self.remove_updates(seqs)?;
            }
            Write::EvictRun { job_id, seqs } => {
                self.runs.remove(job_id.as_str()).map_err(cause)?;
                self.remove_updates(seqs)?;
                let evicted = match self.meta.get("evicted").map_err(cause)? {
                    Some(value) => String::from_utf8_lossy(value.value())
                        .parse::<u64>()
                        .unwrap_or(0),
                    None => 0,
                };
                self.meta
                    .insert("evicted", (evicted + 1).to_string().as_bytes())
                    .map_err(cause)?;
            }
            Write::Clear => {
                self.updates.retain(|_, _| false).map_err(cause)?;
                self.runs.retain(|_, _| false).map_err(cause)?;
                self.meta
                    .insert("evicted", b"0".as_slice())
                    .map_err(cause)?;
            }
            Write::Document { name, json } => {
                self.meta.insert(name, json.as_bytes()).map_err(cause)?;
            }
            Write::All(writes) => {
                for write in writes {
                    self.apply(write)?;
                }
            }
        }
        Ok(())
    }

    fn remove_updates(&mut self, seqs: Vec<u64>) -> Result<(), String> {
        for seq in seqs {
            self.updates.remove(seq).map_err(cause)?;
        }
        Ok(())
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode a record: {e}"))
}

/// What went wrong, in the operating system's words when it has some ("No space left on
/// device (os error 28)").
fn cause(error: impl Into<redb::Error>) -> String {
    match error.into() {
        redb::Error::Io(e) => e.to_string(),
        other => other.to_string(),
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

/// `writes` committed to a new database in memory, and what a start would read back from
/// it: for tests of what is kept.
#[cfg(test)]
pub(crate) fn read_back(writes: Vec<Write>) -> Result<Restored, String> {
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| e.to_string())?;
    write_format(&db)?;
    commit(&db, writes, false)?;
    check_format(&db)?;
    read(&db)
}

/// A store in memory whose writes fail on demand, as a full disk's do: for tests of what
/// the service does when it cannot write.
#[cfg(test)]
pub(crate) mod flaky {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use redb::backends::InMemoryBackend;
    use redb::{Database, StorageBackend};

    use super::{Opener, Restored, Store};

    /// Opens a store in memory; while `full` is set, every write fails with ENOSPC.
    pub(crate) fn store(full: &Arc<AtomicBool>) -> (Store, Restored) {
        let memory = Arc::new(InMemoryBackend::new());
        let full = Arc::clone(full);
        let opener: Opener = Box::new(move || {
            Database::builder().create_with_backend(Flaky {
                memory: Arc::clone(&memory),
                full: Arc::clone(&full),
            })
        });
        let path = std::path::PathBuf::from("memory/job-launcher-mock.redb");
        match Store::open_with(std::path::Path::new("memory"), path, false, opener) {
            Ok(opened) => opened,
            Err(e) => panic!("a store in memory opens: {e}"),
        }
    }

    #[derive(Debug)]
    struct Flaky {
        memory: Arc<InMemoryBackend>,
        full: Arc<AtomicBool>,
    }

    impl Flaky {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
    }

    impl StorageBackend for Flaky {
        fn len(&self) -> std::io::Result<u64> {
            self.memory.len()
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.memory.read(offset, out)
        }

        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.memory.set_len(len)
        }

        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.memory.sync_data()
        }

        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.memory.write(offset, data)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicBool;

    use super::*;

    #[tokio::test]
    async fn a_saved_value_changes_only_once_its_document_is_written() {
        let full = Arc::new(AtomicBool::new(false));
        let (store, _) = flaky::store(&full);
        let saved = Saved::persisted(vec![1], Arc::new(store), "configs", |v| format!("{v:?}"));
        saved.change(|v| v.push(2)).await.unwrap();
        full.store(true, Ordering::SeqCst);
        let refused = saved.change(|v| v.push(3)).await.map_err(|e| e.to_string());
        assert!(
            refused
                .as_ref()
                .is_err_and(|cause| cause.contains("no space left on device")),
            "{refused:?}"
        );
        assert_eq!(*saved.read(), [1, 2]);
        full.store(false, Ordering::SeqCst);
        saved.change(|v| v.push(4)).await.unwrap();
        assert_eq!(*saved.read(), [1, 2, 4]);
    }

    fn entry(job_id: &str, seq: u64, update: &str) -> StoredEntry {
        StoredEntry {
            job_id: job_id.to_owned(),
            seq,
            received_at: format!("2026-01-01T00:00:0{seq}.000000001Z"),
            update: update.to_owned(),
            warnings: Vec::new(),
            state: None,
        }
    }

    fn run(job_id: &str, order: u64, status: &str) -> StoredRun {
        StoredRun {
            job_id: job_id.to_owned(),
            order,
            status: status.to_owned(),
            first_update_at: "2026-01-01T00:00:00Z".to_owned(),
            last_update_at: "2026-01-01T00:00:09Z".to_owned(),
            update_count: 1,
            dropped: 0,
            warnings: Vec::new(),
        }
    }

    fn update(job_id: &str, seq: u64, order: u64, body: &str, trimmed: Vec<u64>) -> Write {
        Write::Update {
            entry: Box::new(entry(job_id, seq, body)),
            run: Box::new(run(job_id, order, body)),
            trimmed,
        }
    }

    #[test]
    fn what_is_written_reads_back_at_start_in_order() {
        let big = r#"{"jobId":"b","n":123456789012345678901234567890}"#;
        let writes = vec![
            update("b", 1, 1, big, Vec::new()),
            update("a", 2, 2, r#"{"jobId":"a"}"#, Vec::new()),
            update("a", 3, 2, r#"{"jobId":"a","x":1}"#, vec![2]),
            Write::Document {
                name: "configs",
                json: "[]".to_owned(),
            },
        ];
        let restored = read_back(writes).unwrap();
        let runs: Vec<(&str, Vec<u64>)> = restored
            .runs
            .iter()
            .map(|(run, entries)| (run.job_id.as_str(), entries.iter().map(|e| e.seq).collect()))
            .collect();
        assert_eq!(runs, [("b", vec![1]), ("a", vec![3])], "by first update");
        assert_eq!(
            restored.runs[0].1[0].update, big,
            "as written, big number and all"
        );
        assert_eq!(restored.runs[0].0.status, big);
        assert_eq!(
            restored.runs[1].1[0].received_at,
            "2026-01-01T00:00:03.000000001Z"
        );
        assert_eq!(restored.last_seq, 3);
        assert_eq!(restored.evicted, 0);
        assert_eq!(restored.configs.as_deref(), Some("[]"));
        assert_eq!(restored.scenarios, None);
    }

    #[test]
    fn forgotten_evicted_and_cleared_runs_stay_gone_and_seq_goes_on() {
        let writes = vec![
            update("a", 1, 1, r#"{"jobId":"a"}"#, Vec::new()),
            update("b", 2, 2, r#"{"jobId":"b"}"#, Vec::new()),
            update("c", 3, 3, r#"{"jobId":"c"}"#, Vec::new()),
            Write::RemoveRun {
                job_id: "a".to_owned(),
                seqs: vec![1],
            },
            Write::All(vec![
                update("d", 4, 4, r#"{"jobId":"d"}"#, Vec::new()),
                Write::EvictRun {
                    job_id: "b".to_owned(),
                    seqs: vec![2],
                },
            ]),
        ];
        let restored = read_back(writes).unwrap();
        let held: Vec<&str> = restored
            .runs
            .iter()
            .map(|(r, _)| r.job_id.as_str())
            .collect();
        assert_eq!(held, ["c", "d"]);
        assert_eq!((restored.last_seq, restored.evicted), (4, 1));

        let cleared = read_back(vec![
            update("a", 1, 1, r#"{"jobId":"a"}"#, Vec::new()),
            Write::EvictRun {
                job_id: "a".to_owned(),
                seqs: vec![1],
            },
            Write::Clear,
        ])
        .unwrap();
        assert!(cleared.runs.is_empty());
        assert_eq!(cleared.evicted, 0, "a clear forgets the evictions too");
        assert_eq!(cleared.last_seq, 1, "but no seq is handed out twice");
    }

    #[test]
    fn only_this_format_is_read() {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let unmarked = check_format(&db).unwrap_err();
        assert!(
            unmarked.contains("not a job-launcher-mock database"),
            "{unmarked}"
        );
        write_format(&db).unwrap();
        check_format(&db).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format", b"job-launcher-mock/0".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let other = check_format(&db).unwrap_err();
        assert!(
            other.contains("\"job-launcher-mock/0\"") && other.contains(FORMAT),
            "{other}"
        );
    }

    #[test]
    fn a_history_entry_without_its_run_is_corruption() {
        let corrupt = read_back(vec![Write::All(vec![
            update("a", 1, 1, r#"{"jobId":"a"}"#, Vec::new()),
            Write::Update {
                entry: Box::new(entry("ghost", 2, r#"{"jobId":"ghost"}"#)),
                run: Box::new(run("a", 1, r#"{"jobId":"a"}"#)),
                trimmed: Vec::new(),
            },
        ])])
        .unwrap_err();
        assert!(corrupt.contains("seq 2 has no run"), "{corrupt}");
    }

    #[tokio::test]
    async fn a_store_that_cannot_write_says_why_until_a_write_succeeds() {
        let full = Arc::new(AtomicBool::new(false));
        let (store, _) = flaky::store(&full);
        let document = |json: &str| Write::Document {
            name: "configs",
            json: json.to_owned(),
        };
        store.write(document("[]")).await.unwrap();
        assert!(store.down().is_none());
        full.store(true, Ordering::SeqCst);
        let refused = store.write(document("[1]")).await.unwrap_err().to_string();
        assert!(refused.contains("no space left on device"), "{refused}");
        assert!(
            refused.contains("memory/job-launcher-mock.redb"),
            "names the file: {refused}"
        );
        assert_eq!(store.down().map(|cause| cause.to_string()), Some(refused));
        assert_eq!(store.errors(), 1);
        full.store(false, Ordering::SeqCst);
        store.write(document("[2]")).await.unwrap();
        assert!(store.down().is_none(), "up again, with no restart");
        assert_eq!(store.errors(), 1);
    }
}
