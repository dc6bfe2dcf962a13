//! The writer thread: group commit of queued writes, TTL expiry, compaction.
//!
//! One thread owns the only writing connection, so revisions are handed out
//! without locks and in commit order. A batch is one transaction; callers
//! are answered only after it is durably committed, and watchers are told
//! in the same order.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{Shared, SqliteOptions};
use crate::{Error, EventKind, KeyValue, Result, Revision, WatchEvent};

pub(super) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// A committed write: the key's new state (for a delete, the value it
/// removed) and the revision of the write.
pub(super) struct Written {
    pub kv: KeyValue,
    pub revision: Revision,
}

pub(super) enum Request {
    Write(WriteOp, oneshot::Sender<Result<Written>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
}

pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    opts: SqliteOptions,
    // Held for the writer's lifetime; dropping it releases the database.
    _lock: File,
}

/// The live row of a key.
struct Live {
    create_rev: Revision,
    mod_rev: Revision,
    value: Vec<u8>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        opts: SqliteOptions,
        lock: File,
    ) -> Self {
        Writer {
            conn,
            shared,
            opts,
            _lock: lock,
        }
    }

    pub(super) fn run(self, rx: mpsc::Receiver<Request>) {
        let mut last_sweep = Instant::now();
        loop {
            let first = match rx.recv_timeout(self.opts.ttl_sweep_interval) {
                Ok(req) => Some(req),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if last_sweep.elapsed() >= self.opts.ttl_sweep_interval {
                last_sweep = Instant::now();
                if let Err(err) = self.expire() {
                    tracing::warn!(%err, "sqlite: expiring TTL keys failed");
                }
            }
            let Some(first) = first else { continue };
            let mut writes = Vec::new();
            let mut pending = Some(first);
            while let Some(req) = pending.take() {
                match req {
                    Request::Write(op, reply) => writes.push((op, reply)),
                    Request::Compact(rev, reply) => {
                        // Keep order: commit earlier writes before compacting.
                        self.commit_batch(std::mem::take(&mut writes));
                        let _ = reply.send(self.compact(rev));
                    }
                }
                if writes.len() < self.opts.max_batch {
                    pending = rx.try_recv().ok();
                }
            }
            self.commit_batch(writes);
        }
        // Ends every watch stream.
        self.shared
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn commit_batch(&self, batch: Vec<(WriteOp, oneshot::Sender<Result<Written>>)>) {
        if batch.is_empty() {
            return;
        }
        let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match self.apply(ops) {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                let msg = format!("write to {} failed: {err}", self.shared.path.display());
                tracing::error!("sqlite: {msg}");
                for reply in replies {
                    let _ = reply.send(Err(Error::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Apply the ops in one transaction. The outer error is a failure of
    /// the transaction; the inner ones are per-op outcomes (conflicts, ...).
    fn apply(&self, ops: Vec<WriteOp>) -> rusqlite::Result<Vec<Result<Written>>> {
        let start = self.shared.revision.load(Ordering::Acquire);
        let mut next = start;
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        // Cached like the other statements: parsing these three per batch
        // showed in profiles of busy servers.
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let outcome = (|| {
            for op in ops {
                let result = self.apply_one(op, next + 1)?;
                if let Ok((written, event)) = result {
                    next = written.revision;
                    events.push(event);
                    results.push(Ok(written));
                } else if let Err(e) = result {
                    results.push(Err(e));
                }
            }
            if next != start {
                self.conn
                    .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
                    .execute([next])?;
            }
            self.conn.prepare_cached("COMMIT")?.execute([]).map(|_| ())
        })();
        if let Err(err) = outcome {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(err);
        }
        self.publish(next, events);
        Ok(results)
    }

    fn publish(&self, revision: Revision, events: Vec<WatchEvent>) {
        self.shared.revision.store(revision, Ordering::Release);
        if events.is_empty() {
            return;
        }
        let sender = self.shared.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = sender.as_ref() {
            // No receivers is fine: nobody watches.
            let _ = tx.send(Arc::new(events));
        }
    }

    fn live(&self, key: &str) -> rusqlite::Result<Option<Live>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.create_rev, c.mod_rev, l.value FROM current c \
             JOIN log l ON l.rev = c.mod_rev WHERE c.key = ?1",
        )?;
        stmt.query_row([key.as_bytes()], |r| {
            Ok(Live {
                create_rev: r.get(0)?,
                mod_rev: r.get(1)?,
                value: r.get(2)?,
            })
        })
        .optional()
    }

    /// Whether `key` is live, without reading its value (a create only
    /// needs to know).
    fn exists(&self, key: &str) -> rusqlite::Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM current WHERE key = ?1")?;
        stmt.exists([key.as_bytes()])
    }

    #[allow(clippy::type_complexity)]
    fn apply_one(
        &self,
        op: WriteOp,
        rev: Revision,
    ) -> rusqlite::Result<Result<(Written, WatchEvent)>> {
        match op {
            WriteOp::Create { key, value, ttl } => {
                if self.exists(&key)? {
                    return Ok(Err(Error::AlreadyExists { key }));
                }
                self.insert_log(rev, &key, rev, None, false, &value)?;
                self.conn
                    .prepare_cached(
                        "INSERT INTO current (key, create_rev, mod_rev, expires_at) VALUES (?1, ?2, ?2, ?3)",
                    )?
                    .execute(params![key.as_bytes(), rev, expires_at(ttl)])?;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: rev,
                    mod_revision: rev,
                };
                let event = WatchEvent {
                    kind: EventKind::Create,
                    kv: Arc::new(kv.clone()),
                    prev: None,
                };
                Ok(Ok((Written { kv, revision: rev }, event)))
            }
            WriteOp::Update {
                key,
                value,
                expected,
                ttl,
            } => {
                let Some(live) = self.live(&key)? else {
                    return Ok(Err(Error::NotFound { key }));
                };
                if live.mod_rev != expected {
                    return Ok(Err(conflict(key, expected, live)));
                }
                self.insert_log(
                    rev,
                    &key,
                    live.create_rev,
                    Some(live.mod_rev),
                    false,
                    &value,
                )?;
                self.conn
                    .prepare_cached(
                        "UPDATE current SET mod_rev = ?2, expires_at = ?3 WHERE key = ?1",
                    )?
                    .execute(params![key.as_bytes(), rev, expires_at(ttl)])?;
                let prev = KeyValue {
                    key: key.clone(),
                    value: live.value,
                    create_revision: live.create_rev,
                    mod_revision: live.mod_rev,
                };
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: live.create_rev,
                    mod_revision: rev,
                };
                let event = WatchEvent {
                    kind: EventKind::Update,
                    kv: Arc::new(kv.clone()),
                    prev: Some(Arc::new(prev)),
                };
                Ok(Ok((Written { kv, revision: rev }, event)))
            }
            WriteOp::Delete { key, expected } => {
                let Some(live) = self.live(&key)? else {
                    return Ok(Err(Error::NotFound { key }));
                };
                if let Some(expected) = expected.filter(|e| *e != live.mod_rev) {
                    return Ok(Err(conflict(key, expected, live)));
                }
                Ok(Ok(self.delete_live(key, live, rev)?))
            }
        }
    }

    fn delete_live(
        &self,
        key: String,
        live: Live,
        rev: Revision,
    ) -> rusqlite::Result<(Written, WatchEvent)> {
        self.insert_log(rev, &key, live.create_rev, Some(live.mod_rev), true, &[])?;
        self.conn
            .prepare_cached("DELETE FROM current WHERE key = ?1")?
            .execute([key.as_bytes()])?;
        let prev = KeyValue {
            key,
            value: live.value,
            create_revision: live.create_rev,
            mod_revision: live.mod_rev,
        };
        let kv = KeyValue {
            mod_revision: rev,
            ..prev.clone()
        };
        let event = WatchEvent {
            kind: EventKind::Delete,
            kv: Arc::new(kv),
            prev: Some(Arc::new(prev.clone())),
        };
        Ok((
            Written {
                kv: prev,
                revision: rev,
            },
            event,
        ))
    }

    fn insert_log(
        &self,
        rev: Revision,
        key: &str,
        create_rev: Revision,
        prev_rev: Option<Revision>,
        deleted: bool,
        value: &[u8],
    ) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![rev, key.as_bytes(), create_rev, prev_rev, deleted, value])?;
        Ok(())
    }

    /// Delete keys whose TTL has passed, each with its own revision and
    /// delete event, as etcd does when a lease expires.
    fn expire(&self) -> rusqlite::Result<()> {
        let now = now_millis();
        let keys: Vec<Vec<u8>> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT key FROM current WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1000",
            )?;
            let rows = stmt.query_map([now], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if keys.is_empty() {
            return Ok(());
        }
        let ops = keys
            .into_iter()
            .map(|k| WriteOp::Delete {
                key: String::from_utf8_lossy(&k).into_owned(),
                expected: None,
            })
            .collect();
        let expired = self.apply(ops)?;
        tracing::debug!(count = expired.len(), "sqlite: expired TTL keys");
        Ok(())
    }

    /// Discard history before `revision`, keeping for every key the newest
    /// row at or below it (reads at `revision` need it) unless that row is
    /// a delete.
    fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.shared.revision.load(Ordering::Acquire);
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        let from = self.shared.compacted.load(Ordering::Acquire);
        if revision <= from {
            return Ok(());
        }
        // Chunks keep each transaction, and so the pause of writers, short.
        const CHUNK: Revision = 10_000;
        let mut lo = from;
        while lo < revision {
            let hi = (lo + CHUNK).min(revision);
            let tx = || -> rusqlite::Result<()> {
                // Cached like the other statements: parsing these three per batch
                // showed in profiles of busy servers.
                self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
                self.conn.execute(
                    "DELETE FROM log WHERE rev >= ?1 AND rev < ?2 AND (deleted = 1 OR EXISTS ( \
                       SELECT 1 FROM log m WHERE m.key = log.key AND m.rev > log.rev AND m.rev <= ?3))",
                    params![lo, hi, revision],
                )?;
                self.conn
                    .execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [hi])?;
                self.conn.execute_batch("COMMIT")
            };
            if let Err(e) = tx() {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(Error::Sqlite {
                    op: "compact",
                    source: e,
                });
            }
            self.shared.compacted.store(hi, Ordering::Release);
            lo = hi;
        }
        Ok(())
    }
}

fn conflict(key: String, expected: Revision, live: Live) -> Error {
    let current = KeyValue {
        key: key.clone(),
        value: live.value,
        create_revision: live.create_rev,
        mod_revision: live.mod_rev,
    };
    Error::Conflict {
        key,
        expected,
        current: Box::new(current),
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn expires_at(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| now_millis().saturating_add(t.as_millis().min(i64::MAX as u128) as i64))
}
