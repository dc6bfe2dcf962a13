//! Opening the database: pragmas, schema, start-up checks.
//!
//! Errors here name the file, since they reach the operator at start-up.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::{Error, Result, Revision};

const SCHEMA_VERSION: i64 = 1;

// `log.rev` is the revision; a row per write. Deletes are tombstones
// (`deleted = 1`, empty value) pointing at the value they removed through
// `prev_rev`. `current` has one row per live key, pointing at its newest
// log row; it carries no value so that writes store each value once.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,
    key        BLOB    NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER,
    deleted    INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS current (
    key        BLOB    PRIMARY KEY,
    create_rev INTEGER NOT NULL,
    mod_rev    INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS current_expiry ON current (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

fn describe(path: &Path, what: &str, err: rusqlite::Error) -> Error {
    let hint = match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            " (the file is not an SQLite database: restore it from a backup or move it away)"
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            " (the database is corrupt: restore it from a backup or move it away)"
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            " (another process holds a lock on it)"
        }
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::PermissionDenied)
        | Some(ErrorCode::CannotOpen) => {
            " (check the file's permissions and that its directory exists)"
        }
        _ => "",
    };
    Error::Unavailable(format!("{what} {}: {err}{hint}", path.display()))
}

fn open_conn(path: &Path, busy: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| describe(path, "cannot open database", e))?;
    conn.busy_timeout(busy)
        .map_err(|e| describe(path, "cannot configure database", e))?;
    // The query planner stability guarantee: a cached statement keeps its
    // plan whatever is bound to it. Without it SQLite marks statements
    // whose plan might depend on a bound value (the partial index on
    // `current`, the bundled build's STAT4) to be compiled again on every
    // new binding, and the writer's lookup of a key's live row was
    // re-prepared for each write (2% of the server's CPU under load). Our
    // statements look keys up by primary key: one plan fits all values.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|e| describe(path, "cannot configure database", e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Prepared statements kept per connection: more than the writer's and a
/// reader's distinct statements, so none is evicted and compiled again.
const STATEMENT_CACHE: usize = 64;

/// The writer's connection: WAL with full fsync on commit, schema in place,
/// integrity checked.
pub(super) fn open_writer(path: &Path, busy: Duration) -> Result<Connection> {
    let conn = open_conn(path, busy)?;
    // journal_mode is the first statement that reads the file, so a file
    // that is not a database fails here with a message naming it.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| describe(path, "cannot open database", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Unavailable(format!(
            "database {}: cannot switch to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
        .map_err(|e| describe(path, "cannot configure database", e))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| describe(path, "cannot check database", e))?;
    if check != "ok" {
        return Err(Error::Unavailable(format!(
            "database {} is corrupt ({check}): restore it from a backup or move it away",
            path.display()
        )));
    }
    conn.execute_batch(SCHEMA)
        .map_err(|e| describe(path, "cannot create schema in", e))?;
    let version: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(|e| describe(path, "cannot read schema version of", e))?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('schema', ?1)",
                [SCHEMA_VERSION],
            )
            .map_err(|e| describe(path, "cannot write schema version to", e))?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v) => {
            return Err(Error::Unavailable(format!(
            "database {} has schema version {v}; this rkube understands version {SCHEMA_VERSION}",
            path.display()
        )))
        }
    }
    Ok(conn)
}

/// A pooled read connection.
pub(super) fn open_reader(path: &Path, busy: Duration) -> Result<Connection> {
    let conn = open_conn(path, busy)?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(|e| describe(path, "cannot configure database", e))?;
    Ok(conn)
}

/// The current and compacted revisions recorded in the database.
pub(super) fn load_meta(conn: &Connection, path: &Path) -> Result<(Revision, Revision)> {
    let get = |name: &str| -> Result<Revision> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .map_err(|e| describe(path, "cannot read revision of", e))
    };
    Ok((get("revision")?, get("compacted")?))
}
