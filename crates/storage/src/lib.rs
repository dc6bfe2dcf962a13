//! Versioned key-value storage with Kubernetes storage semantics.
//!
//! Upstream counterparts: `k8s.io/apiserver/pkg/storage` (the interface the
//! registry programs against) and kine (an etcd-shaped log over SQL).
//!
//! The store holds bytes under string keys (`/registry/<resource>/<ns>/<name>`
//! by convention of the callers) and knows nothing of API types. Every write
//! gets a cluster-wide, strictly increasing revision; each key carries the
//! revision that created it and the one that last modified it. Those
//! revisions are what the API server exposes as `resourceVersion`.
//!
//! Two backends implement [`Store`]: [`sqlite::SqliteStore`] (embedded, the
//! default) and [`etcd::EtcdStore`] (an etcd v3 cluster, for HA). Both pass
//! the same behaviour battery in `tests/battery.rs`.

pub mod cache;
pub mod compactor;
pub mod error;
pub mod etcd;
pub mod sqlite;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};

pub use error::{Error, Result};

/// A store revision; `resourceVersion` in the API.
pub type Revision = i64;

/// The largest value a write may carry (1.5 MiB, etcd's default
/// `--max-request-bytes`), enforced by every backend alike. etcd counts the
/// key and request framing against its limit too, so an etcd cluster used
/// as the datastore needs `--max-request-bytes` somewhat above this
/// (the test launcher adds 64 KiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
}

/// What a list returns: one page of keys in key order, as of `revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResponse {
    pub items: Vec<KeyValue>,
    /// The revision the page was read at; pass it back to read the next page
    /// from the same snapshot.
    pub revision: Revision,
    /// Whether keys remain after the last one returned.
    pub more: bool,
    /// How many keys remain after this page (0 when `more` is false).
    pub remaining: i64,
}

/// Parameters of a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Return only keys strictly greater than this one (the continue point).
    pub start_after: Option<String>,
    /// At most this many keys; `0` means no limit.
    pub limit: usize,
    /// Read the snapshot at this revision instead of the latest.
    pub revision: Option<Revision>,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Update,
    Delete,
}

/// One change seen by a watch. The states are shared: every watch of a
/// change gets the same ones (a pod's few kilobytes copied per watcher
/// cost the watch cache more than sending them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// The key after the change. For a delete: the value is the last value
    /// the key held, and `mod_revision` is the revision of the delete.
    pub kv: Arc<KeyValue>,
    /// The key before the change, for updates and deletes (absent on create,
    /// and where the previous revision has been compacted away).
    pub prev: Option<Arc<KeyValue>>,
}

impl WatchEvent {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events, in revision order. An `Err` item ends it; the
/// first item is `Err(Error::Compacted { .. })` when the start revision has
/// been compacted away.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// An item of a watch that also tells how far it has got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    Event(WatchEvent),
    /// Every change to the watched keys up to this revision has been
    /// given already: a watch resumed from here misses nothing. It moves
    /// past changes to other keys too, which is what keeps the revision
    /// of a quiet prefix recent (upstream's cacher bookmarks likewise).
    Progress(Revision),
}

/// A [`WatchStream`] with [`WatchItem::Progress`] notes between events.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<WatchItem>> + Send>>;

/// A versioned key-value store with compare-and-swap writes and watches.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and benchmarks ("sqlite", "etcd").
    fn backend(&self) -> &'static str;

    /// The latest revision of the store.
    async fn current_revision(&self) -> Result<Revision>;

    /// The value of `key` at `revision` (latest when `None`), together with
    /// the revision the read was served at.
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)>;

    /// Keys starting with `prefix`, in key order, a page at a time.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse>;

    /// How many keys start with `prefix` now.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Store `value` under `key` if the key does not exist. With a `ttl`, the
    /// key is deleted (with a delete event) once it expires.
    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<KeyValue>;

    /// Replace the value of `key` if its mod revision is still `expected`.
    /// On mismatch: `Error::Conflict` carrying the current value.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue>;

    /// Delete `key`, if its mod revision is still `expected` when given.
    /// Returns the deleted value and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Every change to keys starting with `prefix` after revision `after`, in
    /// order, then live changes as they happen.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// As [`Store::watch`], with progress notes now and then. A store that
    /// cannot tell its progress gives only the events.
    async fn watch_with_progress(&self, prefix: &str, after: Revision) -> Result<ProgressStream> {
        let events = self.watch(prefix, after).await?;
        Ok(Box::pin(events.map(|e| e.map(WatchItem::Event))))
    }

    /// Discard history before `revision`: reads and watches from older
    /// revisions then fail with `Error::Compacted`.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// Refuse values larger than [`MAX_VALUE_BYTES`].
pub(crate) fn check_value_size(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            key: key.to_string(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The smallest string greater than every string starting with `prefix`,
/// or `None` when there is none (empty prefix: the whole key space).
pub(crate) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(
            prefix_end("/registry/pods/"),
            Some(b"/registry/pods0".to_vec())
        );
        assert_eq!(prefix_end("a"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn value_size_limit_is_inclusive() {
        assert!(check_value_size("k", &vec![0; MAX_VALUE_BYTES]).is_ok());
        let err = check_value_size("k", &vec![0; MAX_VALUE_BYTES + 1]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { size, .. } if size == MAX_VALUE_BYTES + 1));
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
