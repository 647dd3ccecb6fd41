//! The database of `--data-dir`: redb, an embedded, crash-safe key-value store; its
//! tables, the format marker, reading it back at start, and the writer thread that
//! commits the queue's writes (see the parent module).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::Serialize;

use super::{
    Health, Message, Restored, RestoredSession, Store, StoreError, StoredEntry, StoredRun,
    Unavailable, Write,
};

/// History entries, by `seq`.
const UPDATES: TableDefinition<u64, &[u8]> = TableDefinition::new("updates");
/// Runs' current status and bookkeeping, by jobId.
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
/// Everything else, by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The sessions, by id: how each was made (its name, ttl and clock, as JSON). A session's
/// own world is kept in tables of its own (`session/{id}/...`).
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// The format this version writes and reads; another is refused at start.
const FORMAT: &str = "job-launcher-mock/1";
const FILE: &str = "job-launcher-mock.redb";

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
        Ok((
            Store {
                queue,
                health,
                scope: None,
            },
            restored,
        ))
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
    let mut restored = read_world(&txn, &TableNames::root())?
        .ok_or_else(|| "its tables are missing".to_owned())?;
    let listed = match txn.open_table(SESSIONS) {
        Ok(listed) => listed,
        // Written before sessions were kept: none.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(restored),
        Err(e) => return Err(format!("cannot read the sessions: {e}")),
    };
    for row in listed
        .iter()
        .map_err(|e| format!("a session record is corrupt: {e}"))?
    {
        let (id, meta) = row.map_err(|e| format!("a session record is corrupt: {e}"))?;
        let id = id.value().to_owned();
        let data = read_world(&txn, &TableNames::session(&id))?
            // A session nothing was written to yet has no tables.
            .unwrap_or_default();
        restored.sessions.push(RestoredSession {
            meta: String::from_utf8_lossy(meta.value()).into_owned(),
            id,
            data,
        });
    }
    Ok(restored)
}

/// One world's runs, histories and documents; `None` when its tables do not exist.
fn read_world(txn: &redb::ReadTransaction, names: &TableNames) -> Result<Option<Restored>, String> {
    let runs_table = match txn.open_table(names.runs()) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(format!("cannot read runs: {e}")),
    };
    let updates = txn
        .open_table(names.updates())
        .map_err(|e| format!("cannot read updates: {e}"))?;
    let meta = txn
        .open_table(names.meta())
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
    Ok(Some(Restored {
        runs,
        last_seq,
        evicted,
        scenarios: document("scenarios")?,
        configs: document("configs")?,
        faults: document("faults")?,
        sessions: Vec::new(),
    }))
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
        let mut open = Open {
            txn: &txn,
            root: Tables::open(&txn, &TableNames::root())?,
            sessions: HashMap::new(),
            listed: txn.open_table(SESSIONS).map_err(cause)?,
        };
        for write in writes {
            open.apply(write)?;
        }
        if probe {
            let now = crate::model::time::rfc3339(chrono::Utc::now());
            open.root
                .meta
                .insert("probedAt", now.as_bytes())
                .map_err(cause)?;
        }
    }
    txn.commit().map_err(cause)
}

/// The names of one world's tables: the service's own world, or a session's.
struct TableNames {
    updates: String,
    runs: String,
    meta: String,
}

impl TableNames {
    fn root() -> TableNames {
        TableNames {
            updates: UPDATES.name().to_owned(),
            runs: RUNS.name().to_owned(),
            meta: META.name().to_owned(),
        }
    }

    /// A session's: its id is a jobId-like name, safe in a table's name.
    fn session(id: &str) -> TableNames {
        TableNames {
            updates: format!("session/{id}/updates"),
            runs: format!("session/{id}/runs"),
            meta: format!("session/{id}/meta"),
        }
    }

    fn updates(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.updates)
    }

    fn runs(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.runs)
    }

    fn meta(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.meta)
    }
}

/// The tables a write transaction has opened: the service's world's, each session's it
/// wrote to, and the list of sessions.
struct Open<'t> {
    txn: &'t redb::WriteTransaction,
    root: Tables<'t>,
    sessions: HashMap<Arc<str>, Tables<'t>>,
    listed: redb::Table<'t, &'static str, &'static [u8]>,
}

impl Open<'_> {
    fn apply(&mut self, write: Write) -> Result<(), String> {
        match write {
            Write::Scoped { scope, write } => {
                if !self.sessions.contains_key(&scope) {
                    let tables = Tables::open(self.txn, &TableNames::session(&scope))?;
                    self.sessions.insert(Arc::clone(&scope), tables);
                }
                match self.sessions.get_mut(&scope) {
                    Some(tables) => tables.apply(*write),
                    None => Err(format!("the tables of session {scope} did not open")),
                }
            }
            Write::SessionCreated { id, json } => self
                .listed
                .insert(id.as_str(), json.as_bytes())
                .map(|_| ())
                .map_err(cause),
            Write::SessionDeleted { id } => {
                // Its tables must be closed to be deleted.
                self.sessions.remove(id.as_str());
                self.listed.remove(id.as_str()).map_err(cause)?;
                let names = TableNames::session(&id);
                self.txn.delete_table(names.updates()).map_err(cause)?;
                self.txn.delete_table(names.runs()).map_err(cause)?;
                self.txn.delete_table(names.meta()).map_err(cause)?;
                Ok(())
            }
            Write::All(writes) => {
                for write in writes {
                    self.apply(write)?;
                }
                Ok(())
            }
            write => self.root.apply(write),
        }
    }
}

/// One world's tables in a write transaction.
struct Tables<'t> {
    updates: redb::Table<'t, u64, &'static [u8]>,
    runs: redb::Table<'t, &'static str, &'static [u8]>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction, names: &TableNames) -> Result<Tables<'t>, String> {
        Ok(Tables {
            updates: txn.open_table(names.updates()).map_err(cause)?,
            runs: txn.open_table(names.runs()).map_err(cause)?,
            meta: txn.open_table(names.meta()).map_err(cause)?,
        })
    }

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
            Write::Scoped { .. } | Write::SessionCreated { .. } | Write::SessionDeleted { .. } => {
                return Err("a session's write inside another world's".to_owned());
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

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::store::Saved;

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
