//! The watch cache: a [`Store`] in front of another that serves reads and
//! watches from memory, fed by one watch on the whole key space.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/storage/cacher`. Reads of
//! the latest state are consistent as upstream's "consistent list from
//! cache": the cache first waits until it has seen the backing store's
//! current revision, so a client always reads its own writes. Reads at
//! other revisions, and watches from before the cache's window, go to the
//! backing store. Writes always go to the backing store.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};

use crate::{
    Error, EventKind, KeyValue, ListOptions, ListResponse, Result, Revision, Store, WatchEvent,
    WatchStream,
};

/// How many recent events a cache keeps for watches that start in the past.
const HISTORY: usize = 4096;
/// How long a read waits for the cache to catch up before going to the
/// backing store instead.
const CATCH_UP: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Event {
    kind: EventKind,
    kv: Arc<KeyValue>,
    prev: Option<Arc<KeyValue>>,
}

impl Event {
    fn to_watch_event(&self) -> WatchEvent {
        WatchEvent {
            kind: self.kind,
            kv: (*self.kv).clone(),
            prev: self.prev.as_deref().cloned(),
        }
    }
}

struct Data {
    /// False while (re)loading: reads then go to the backing store.
    ready: bool,
    revision: Revision,
    kvs: BTreeMap<String, Arc<KeyValue>>,
    history: VecDeque<Event>,
    /// Every event after this revision is in `history`.
    window_start: Revision,
    /// Live events for watches. Replaced on every (re)load: dropping the
    /// old sender ends the watches that were following it, since the
    /// events missed while the cache was reloading are in no history they
    /// could read. Their clients watch again from their last revision.
    events: broadcast::Sender<Event>,
}

impl Default for Data {
    fn default() -> Data {
        Data {
            ready: false,
            revision: 0,
            kvs: BTreeMap::new(),
            history: VecDeque::new(),
            window_start: 0,
            events: broadcast::channel(HISTORY).0,
        }
    }
}

struct State {
    data: RwLock<Data>,
    revision: watch::Sender<Revision>,
}

/// A store whose latest state and recent history are held in memory.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    state: Arc<State>,
    feeder: tokio::task::JoinHandle<()>,
}

impl CachedStore {
    /// Start caching `inner`. Reads fall through to it until the cache has
    /// loaded.
    pub fn new(inner: Arc<dyn Store>) -> CachedStore {
        let (revision, _) = watch::channel(0);
        let state = Arc::new(State {
            data: RwLock::new(Data::default()),
            revision,
        });
        let feeder = tokio::spawn(feed(inner.clone(), state.clone()));
        CachedStore {
            inner,
            state,
            feeder,
        }
    }

    /// Wait until the cache holds revision `rev`; false when it did not in
    /// time (or is not loaded).
    async fn caught_up(&self, rev: Revision) -> bool {
        let mut rx = self.state.revision.subscribe();
        let ready = |r: &Revision| *r >= rev;
        let waited = tokio::time::timeout(CATCH_UP, rx.wait_for(ready)).await;
        // `waited` holds the revision channel's read lock; the feeder takes
        // the data lock before that channel's, so let go before reading.
        let arrived = matches!(waited, Ok(Ok(_)));
        drop(waited);
        arrived && self.read().ready
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.state.data.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest state is readable from memory.
    async fn fresh(&self) -> Result<bool> {
        let current = self.inner.current_revision().await?;
        Ok(self.caught_up(current).await)
    }
}

impl CachedStore {
    /// A page from memory, when the cache holds the requested snapshot.
    fn list_cached(&self, prefix: &str, opts: &ListOptions) -> Option<ListResponse> {
        let data = self.read();
        if !data.ready || opts.revision.is_some_and(|rev| rev != data.revision) {
            return None;
        }
        let lower = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.clone()),
            _ => Bound::Included(prefix.to_string()),
        };
        let range = data
            .kvs
            .range::<String, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| in_prefix(k, prefix));
        let mut items = Vec::new();
        let mut remaining = 0i64;
        for (_, kv) in range {
            if opts.limit == 0 || items.len() < opts.limit {
                items.push((**kv).clone());
            } else {
                remaining += 1;
            }
        }
        Some(ListResponse {
            items,
            revision: data.revision,
            more: remaining > 0,
            remaining,
        })
    }

    /// The backlog after `after` and a live subscription, taken together
    /// under the lock; `None` when `after` is outside the window.
    fn subscribe(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Option<(Vec<Event>, broadcast::Receiver<Event>)> {
        let data = self.read();
        if !data.ready || after < data.window_start || after > data.revision {
            return None;
        }
        let backlog = data
            .history
            .iter()
            .filter(|e| e.kv.mod_revision > after && in_prefix(&e.kv.key, prefix))
            .cloned()
            .collect();
        Some((backlog, data.events.subscribe()))
    }
}

impl Drop for CachedStore {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

/// Load the key space, then follow it; reload whenever the watch breaks.
async fn feed(inner: Arc<dyn Store>, state: Arc<State>) {
    loop {
        match load(&*inner, &state).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(event) => apply(&state, event),
                        Err(err) => {
                            tracing::warn!(%err, "watch cache: watch ended; reloading");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "watch cache: load failed; retrying"),
        }
        {
            let mut data = state.data.write().unwrap_or_else(|p| p.into_inner());
            data.ready = false;
            // End the watches served so far: what happens until the reload
            // is seen by nobody, and a watch that went on would skip it.
            data.events = broadcast::channel(HISTORY).0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn load(inner: &dyn Store, state: &State) -> Result<WatchStream> {
    let mut kvs = BTreeMap::new();
    let mut opts = ListOptions {
        limit: 10_000,
        ..Default::default()
    };
    let revision = loop {
        let page = inner.list("", opts.clone()).await?;
        let last = page.items.last().map(|kv| kv.key.clone());
        for kv in page.items {
            kvs.insert(kv.key.clone(), Arc::new(kv));
        }
        if !page.more {
            break page.revision;
        }
        opts.start_after = last;
        opts.revision = Some(page.revision);
    };
    let events = inner.watch("", revision).await?;
    let mut data = state.data.write().unwrap_or_else(|p| p.into_inner());
    *data = Data {
        ready: true,
        revision,
        kvs,
        history: VecDeque::new(),
        window_start: revision,
        events: broadcast::channel(HISTORY).0,
    };
    tracing::debug!(revision, keys = data.kvs.len(), "watch cache loaded");
    drop(data);
    state.revision.send_replace(revision);
    Ok(events)
}

fn apply(state: &State, event: WatchEvent) {
    let rev = event.revision();
    let kv = Arc::new(event.kv);
    let mut data = state.data.write().unwrap_or_else(|p| p.into_inner());
    let prev = match event.kind {
        EventKind::Delete => data.kvs.remove(&kv.key),
        EventKind::Create | EventKind::Update => data.kvs.insert(kv.key.clone(), kv.clone()),
    };
    let prev = prev.or_else(|| event.prev.map(Arc::new));
    let cached = Event {
        kind: event.kind,
        kv,
        prev,
    };
    if data.history.len() == HISTORY {
        if let Some(old) = data.history.pop_front() {
            data.window_start = old.kv.mod_revision;
        }
    }
    data.history.push_back(cached.clone());
    data.revision = rev;
    // Send while holding the lock so a watch that subscribes under the lock
    // sees each event exactly once: in history or live.
    let _ = data.events.send(cached);
    drop(data);
    state.revision.send_replace(rev);
}

fn in_prefix(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
}

#[async_trait]
impl Store for CachedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        if revision.is_none() && self.fresh().await? {
            let data = self.read();
            return Ok((data.kvs.get(key).map(|kv| (**kv).clone()), data.revision));
        }
        self.inner.get(key, revision).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse> {
        if opts.revision.is_none() && !self.fresh().await? {
            return self.inner.list(prefix, opts).await;
        }
        match self.list_cached(prefix, &opts) {
            Some(page) => Ok(page),
            None => self.inner.list(prefix, opts).await,
        }
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        if !self.fresh().await? {
            return self.inner.count(prefix).await;
        }
        let data = self.read();
        let n = data
            .kvs
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| in_prefix(k, prefix))
            .count();
        Ok(n as i64)
    }

    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<KeyValue> {
        self.inner.create(key, value, ttl).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        self.inner.update(key, value, expected, ttl).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        self.inner.delete(key, expected).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let Some((backlog, live)) = self.subscribe(prefix, after) else {
            return self.inner.watch(prefix, after).await;
        };
        let (tx, rx) = mpsc::channel(256);
        let prefix = prefix.to_string();
        let state = self.state.clone();
        tokio::spawn(async move { forward(state, prefix, after, backlog, live, tx).await });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await?;
        // Watches from before the compaction fail here too, as on the
        // backing store.
        let mut data = self.state.data.write().unwrap_or_else(|p| p.into_inner());
        let start = revision - 1;
        if start > data.window_start {
            data.window_start = start;
            data.history.retain(|e| e.kv.mod_revision > start);
        }
        Ok(())
    }
}

/// Deliver a watch's backlog, then live events; a watcher that falls
/// behind is caught up from history, or ended (it re-watches) when its
/// place has left the window.
async fn forward(
    state: Arc<State>,
    prefix: String,
    after: Revision,
    backlog: Vec<Event>,
    mut live: broadcast::Receiver<Event>,
    tx: mpsc::Sender<Result<WatchEvent>>,
) {
    let mut last = after;
    for event in backlog {
        last = event.kv.mod_revision;
        if tx.send(Ok(event.to_watch_event())).await.is_err() {
            return;
        }
    }
    loop {
        let received = tokio::select! {
            r = live.recv() => r,
            _ = tx.closed() => return,
        };
        match received {
            Ok(event) => {
                if event.kv.mod_revision <= last {
                    continue;
                }
                last = event.kv.mod_revision;
                if in_prefix(&event.kv.key, &prefix)
                    && tx.send(Ok(event.to_watch_event())).await.is_err()
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let catch_up = {
                    let data = state.data.read().unwrap_or_else(|p| p.into_inner());
                    if last < data.window_start {
                        None
                    } else {
                        live = data.events.subscribe();
                        Some(
                            data.history
                                .iter()
                                .filter(|e| {
                                    e.kv.mod_revision > last && in_prefix(&e.kv.key, &prefix)
                                })
                                .cloned()
                                .collect::<Vec<_>>(),
                        )
                    }
                };
                let Some(events) = catch_up else {
                    let compacted = state
                        .data
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .window_start;
                    let _ = tx
                        .send(Err(Error::Compacted {
                            requested: last + 1,
                            compacted,
                        }))
                        .await;
                    return;
                };
                for event in events {
                    last = event.kv.mod_revision;
                    if tx.send(Ok(event.to_watch_event())).await.is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    async fn cached() -> (tempfile::TempDir, CachedStore) {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        (dir, CachedStore::new(inner))
    }

    #[tokio::test]
    async fn reads_see_own_writes_and_lists_page() {
        let (_dir, store) = cached().await;
        for i in 0..5 {
            store
                .create(&format!("/r/a/{i}"), vec![i], None)
                .await
                .unwrap();
            // Read-your-writes, served by the cache once it caught up.
            let (kv, rev) = store.get(&format!("/r/a/{i}"), None).await.unwrap();
            assert_eq!(kv.unwrap().value, vec![i]);
            assert_eq!(rev, i as i64 + 1);
        }
        store.create("/r/b", b"x".to_vec(), None).await.unwrap();
        let page = store
            .list(
                "/r/a/",
                ListOptions {
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((page.items.len(), page.more, page.remaining), (2, true, 3));
        let rest = store
            .list(
                "/r/a/",
                ListOptions {
                    start_after: Some(page.items[1].key.clone()),
                    limit: 0,
                    revision: Some(page.revision),
                },
            )
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 3);
        assert_eq!(store.count("/r/").await.unwrap(), 6);
    }

    #[tokio::test]
    async fn watch_replays_window_then_live() {
        let (_dir, store) = cached().await;
        store.create("/w/a", b"1".to_vec(), None).await.unwrap();
        store.update("/w/a", b"2".to_vec(), 1, None).await.unwrap();
        // Make sure the cache is loaded and caught up.
        store.get("/w/a", None).await.unwrap();
        let mut w = store.watch("/w/", 1).await.unwrap();
        let ev = w.next().await.unwrap().unwrap();
        assert_eq!(
            (ev.kind, ev.revision(), ev.prev.unwrap().value),
            (EventKind::Update, 2, b"1".to_vec())
        );
        store.delete("/w/a", None).await.unwrap();
        let ev = w.next().await.unwrap().unwrap();
        assert_eq!(
            (ev.kind, ev.revision(), ev.kv.value),
            (EventKind::Delete, 3, b"2".to_vec())
        );
    }

    /// A store whose watches can be cut, as a backing store's watch breaks.
    struct Breakable {
        inner: SqliteStore,
        cut: watch::Sender<u32>,
    }

    #[async_trait]
    impl Store for Breakable {
        fn backend(&self) -> &'static str {
            "breakable"
        }
        async fn current_revision(&self) -> Result<Revision> {
            self.inner.current_revision().await
        }
        async fn get(
            &self,
            key: &str,
            rev: Option<Revision>,
        ) -> Result<(Option<KeyValue>, Revision)> {
            self.inner.get(key, rev).await
        }
        async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse> {
            self.inner.list(prefix, opts).await
        }
        async fn count(&self, prefix: &str) -> Result<i64> {
            self.inner.count(prefix).await
        }
        async fn create(
            &self,
            key: &str,
            value: Vec<u8>,
            ttl: Option<Duration>,
        ) -> Result<KeyValue> {
            self.inner.create(key, value, ttl).await
        }
        async fn update(
            &self,
            key: &str,
            value: Vec<u8>,
            expected: Revision,
            ttl: Option<Duration>,
        ) -> Result<KeyValue> {
            self.inner.update(key, value, expected, ttl).await
        }
        async fn delete(
            &self,
            key: &str,
            expected: Option<Revision>,
        ) -> Result<(KeyValue, Revision)> {
            self.inner.delete(key, expected).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
            let events = self.inner.watch(prefix, after).await?;
            let mut cut = self.cut.subscribe();
            cut.borrow_and_update();
            let cut = async move {
                let _ = cut.changed().await;
            };
            let broken = futures::stream::once(async { Err(Error::Closed) });
            Ok(Box::pin(events.take_until(cut).chain(broken)))
        }
        async fn compact(&self, revision: Revision) -> Result<()> {
            self.inner.compact(revision).await
        }
    }

    #[tokio::test]
    async fn a_reload_ends_watches_instead_of_skipping_what_it_missed() {
        let dir = tempfile::tempdir().unwrap();
        let breakable = Arc::new(Breakable {
            inner: SqliteStore::open(&dir.path().join("db")).unwrap(),
            cut: watch::channel(0).0,
        });
        let store = CachedStore::new(breakable.clone());
        store.create("/w/a", b"1".to_vec(), None).await.unwrap();
        let (_, rev) = store.get("/w/a", None).await.unwrap();
        let mut w = store.watch("/w/", rev).await.unwrap();

        // The backing watch breaks; a write lands while the cache reloads.
        breakable.cut.send_modify(|n| *n += 1);
        store.create("/w/b", b"2".to_vec(), None).await.unwrap();
        store.get("/w/b", None).await.unwrap();
        store.create("/w/c", b"3".to_vec(), None).await.unwrap();

        let mut seen = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(ev) = w.next().await {
                seen.push(ev.unwrap().kv.key);
            }
        })
        .await;
        assert!(ended.is_ok(), "the watch went on after a reload: {seen:?}");
        if seen.contains(&"/w/c".to_string()) {
            assert_eq!(seen, ["/w/b", "/w/c"]);
        }
        // Watching again from the last revision seen misses nothing.
        let mut again = store.watch("/w/", rev).await.unwrap();
        for key in ["/w/b", "/w/c"] {
            assert_eq!(again.next().await.unwrap().unwrap().kv.key, key);
        }
    }
}
