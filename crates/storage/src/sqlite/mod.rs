//! Embedded SQLite backend: the default store, one file per server.
//!
//! Upstream counterpart: kine's SQL log. The table `log` holds every
//! revision (its primary key *is* the revision); `current` points each live
//! key at its newest log row, so reads of the latest state never scan
//! history. All writes go through one writer thread that commits whatever
//! requests are queued in one durable transaction (group commit): 16
//! concurrent writers share one fsync instead of paying 16. Reads use a pool
//! of connections; WAL lets them run beside the writer.

mod read;
mod schema;
mod watch;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot};

use crate::{
    check_value_size, Error, KeyValue, ListOptions, ListResponse, Result, Revision, Store,
    WatchEvent, WatchStream,
};

use write::{Request, WriteOp};

/// Tuning of the SQLite backend.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How often expired TTL keys are deleted.
    pub ttl_sweep_interval: Duration,
    /// How long to wait for a lock held by another connection (e.g. the
    /// sqlite3 shell) before failing.
    pub busy_timeout: Duration,
    /// Most requests committed in one transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            ttl_sweep_interval: Duration::from_millis(500),
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
        }
    }
}

/// State shared by the store handle, the writer thread and watch tasks.
struct Shared {
    path: PathBuf,
    busy_timeout: Duration,
    /// Idle read connections.
    readers: Mutex<Vec<Connection>>,
    /// Latest committed revision.
    revision: AtomicI64,
    /// Oldest revision still readable (0 before any compaction).
    compacted: AtomicI64,
    /// Committed events, one message per transaction. `None` once the
    /// writer has stopped, which ends every watch.
    events: Mutex<Option<broadcast::Sender<Arc<Vec<WatchEvent>>>>>,
}

/// The embedded SQLite store. Dropping it stops the writer thread and
/// releases the database's lock file.
pub struct SqliteStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl SqliteStore {
    /// Open (or create) the database file at `path` with default options.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Open (or create) the database file at `path`.
    pub fn open_with(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        let lock = lock_database(path)?;
        let conn = schema::open_writer(path, opts.busy_timeout)?;
        let (revision, compacted) = schema::load_meta(&conn, path)?;
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            busy_timeout: opts.busy_timeout,
            readers: Mutex::new(Vec::new()),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events: Mutex::new(Some(events)),
        });
        let (tx, rx) = mpsc::channel();
        let writer = write::Writer::new(conn, shared.clone(), opts, lock);
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Unavailable(format!("cannot start sqlite writer thread: {e}")))?;
        Ok(SqliteStore {
            shared,
            requests: Some(tx),
            writer: Some(handle),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: WriteOp) -> Result<write::Written> {
        let (tx, rx) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(Error::Closed)?;
        requests
            .send(Request::Write(op, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Run `f` on a pooled read connection off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.with_reader(|conn| f(conn, &shared)))
            .await
            .map_err(|e| Error::Unavailable(format!("sqlite read task failed: {e}")))?
    }
}

impl Shared {
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::open_reader(&self.path, self.busy_timeout)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 16 {
            pool.push(conn);
        }
        out
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<Vec<WatchEvent>>>> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.as_ref().map(|tx| tx.subscribe())
    }

    /// Fail reads at revisions the store no longer has or does not have yet.
    fn check_readable(&self, requested: Revision, current: Revision) -> Result<()> {
        if requested > current {
            return Err(Error::FutureRevision { requested, current });
        }
        let compacted = self.compacted.load(Ordering::Acquire);
        if requested < compacted {
            return Err(Error::Compacted {
                requested,
                compacted,
            });
        }
        Ok(())
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has committed what is
        // queued; joining makes reopening the same file right away safe.
        self.requests.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

/// Take an exclusive lock beside the database so two servers never share
/// one file (SQLite itself would let them, and interleave their revisions).
fn lock_database(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create database directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            Error::Unavailable(format!(
                "cannot open lock file {}: {e}",
                lock_path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
            "database {} is in use by another process (lock file {} is held); \
             stop the other rkube server or use a different --data-dir",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Unavailable(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let key = key.to_string();
        self.read(move |conn, shared| read::get(conn, shared, &key, revision))
            .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse> {
        let prefix = prefix.to_string();
        self.read(move |conn, shared| read::list(conn, shared, &prefix, &opts))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let prefix = prefix.to_string();
        self.read(move |conn, _| read::count(conn, &prefix)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        let written = self
            .write(WriteOp::Create {
                key: key.to_string(),
                value,
                ttl,
            })
            .await?;
        Ok(written.kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        let op = WriteOp::Update {
            key: key.to_string(),
            value,
            expected,
            ttl,
        };
        Ok(self.write(op).await?.kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let written = self
            .write(WriteOp::Delete {
                key: key.to_string(),
                expected,
            })
            .await?;
        Ok((written.kv, written.revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::start(self.shared.clone(), prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(Error::Closed)?;
        requests
            .send(Request::Compact(revision, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

#[cfg(test)]
mod tests;
