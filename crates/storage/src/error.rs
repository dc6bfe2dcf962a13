//! Errors of the store, shared by every backend so callers (the registry)
//! can map them to API statuses without knowing the backend.

use crate::{KeyValue, Revision};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Create of a key that exists.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },

    /// Update or delete of a key that does not exist.
    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// The key's mod revision is not the one the write expected. `current`
    /// is the value the key holds now, so the caller can retry.
    #[error("key {key:?} was modified: expected revision {expected}, it is at {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },

    /// A read or watch at a revision older than the oldest one kept.
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    /// A read at a revision the store has not reached yet.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    /// A value over the size limit.
    #[error("value for key {key:?} is {size} bytes, which exceeds the limit of {limit} bytes")]
    TooLarge {
        key: String,
        size: usize,
        limit: usize,
    },

    /// The backend could not be opened or reached (names the file or endpoint).
    #[error("{0}")]
    Unavailable(String),

    /// The SQLite backend failed.
    #[error("sqlite: {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// The etcd backend failed.
    #[error("etcd: {op}: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },

    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
}

impl Error {
    pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Sqlite { op, source }
    }

    pub(crate) fn etcd(op: &'static str) -> impl FnOnce(etcd_client::Error) -> Error {
        move |source| Error::Etcd { op, source }
    }
}
