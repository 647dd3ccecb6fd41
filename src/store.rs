//! Persistence with `--data-dir`: an embedded redb database the registry, scenarios,
//! configs and fault rules are written to, and read back from at start.
//!
//! Writes go to one writer thread through a queue, in the order they were made. The
//! thread takes every write waiting, applies them in one transaction and commits it with
//! an fsync: concurrent writers share a sync instead of paying one each. A request that
//! must not be answered before its write is durable waits on [`Store::synced`], a
//! marker queued behind its write.
//!
//! What is kept: each run's current status and bookkeeping (one row per run, rewritten
//! with each update) and its history (one row per update, keyed by `seq`); the count of
//! evicted runs; the scenarios, configs and rules as JSON documents. The journal,
//! simulated runs' pending steps and fault hit counts since the last change are not.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

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
    /// A run forgotten or evicted, with its history.
    RemoveRun { job_id: String, seqs: Vec<u64> },
    /// Every run forgotten.
    Clear,
    /// A document by name: `evicted`, `scenarios`, `configs`, `faults`.
    Document { name: &'static str, json: String },
}

enum Message {
    Write(Write),
    /// Answered once every write queued before it is durable.
    Sync(oneshot::Sender<()>),
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

/// A data directory that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("data directory {dir}: {reason}")]
pub struct StoreError {
    dir: PathBuf,
    reason: String,
}

pub struct Store {
    queue: mpsc::Sender<Message>,
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
        let fail = |reason: String| StoreError {
            dir: dir.to_owned(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
        let path = dir.join(FILE);
        let existed = path.exists();
        let db = Database::create(&path).map_err(|e| {
            fail(format!(
                "cannot open {} ({e}); is another job-launcher-mock using it, or is it not a \
                 job-launcher-mock database?",
                path.display()
            ))
        })?;
        if existed {
            check_format(&db).map_err(&fail)?;
        } else {
            write_format(&db).map_err(&fail)?;
        }
        let restored = read(&db).map_err(&fail)?;
        let (queue, received) = mpsc::channel();
        thread::Builder::new()
            .name("jlm-store".to_owned())
            .spawn(move || write_loop(&db, &received))
            .map_err(|e| fail(format!("cannot start the writer: {e}")))?;
        Ok((Store { queue }, restored))
    }

    /// Queues a write; it becomes durable with the next commit.
    pub fn write(&self, write: Write) {
        // An error means the writer has stopped, which it only does on a failure it
        // logged: the service goes on in memory.
        let _ = self.queue.send(Message::Write(write));
    }

    /// Resolves once every write queued so far is on disk.
    pub async fn synced(&self) {
        let (done, waited) = oneshot::channel();
        if self.queue.send(Message::Sync(done)).is_ok() {
            let _ = waited.await;
        }
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

/// The writer: each round takes every message waiting, writes them in one transaction,
/// commits (an fsync), then answers the syncs among them.
fn write_loop(db: &Database, queue: &mpsc::Receiver<Message>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let (writes, syncs): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|m| matches!(m, Message::Write(_)));
        if !writes.is_empty()
            && let Err(e) = commit(db, writes)
        {
            tracing::error!(error = %e, "cannot write to the data directory; the service goes on in memory only");
            return;
        }
        for sync in syncs {
            if let Message::Sync(done) = sync {
                let _ = done.send(());
            }
        }
    }
}

fn commit(db: &Database, writes: Vec<Message>) -> Result<(), Box<dyn std::error::Error>> {
    let txn = db.begin_write()?;
    {
        let mut updates = txn.open_table(UPDATES)?;
        let mut runs = txn.open_table(RUNS)?;
        let mut meta = txn.open_table(META)?;
        for message in writes {
            let Message::Write(write) = message else {
                continue;
            };
            match write {
                Write::Update {
                    entry,
                    run,
                    trimmed,
                } => {
                    updates.insert(entry.seq, serde_json::to_vec(&entry)?.as_slice())?;
                    meta.insert("lastSeq", entry.seq.to_string().as_bytes())?;
                    runs.insert(run.job_id.as_str(), serde_json::to_vec(&run)?.as_slice())?;
                    for seq in trimmed {
                        updates.remove(seq)?;
                    }
                }
                Write::RemoveRun { job_id, seqs } => {
                    runs.remove(job_id.as_str())?;
                    for seq in seqs {
                        updates.remove(seq)?;
                    }
                }
                Write::Clear => {
                    updates.retain(|_, _| false)?;
                    runs.retain(|_, _| false)?;
                    meta.insert("evicted", b"0".as_slice())?;
                }
                Write::Document { name, json } => {
                    meta.insert(name, json.as_bytes())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}
