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
    Error, EventKind, KeyValue, ListOptions, ListResponse, ProgressStream, Result, Revision, Store,
    WatchEvent, WatchItem, WatchStream,
};

/// How many recent events a cache keeps for watches that start in the past.
const HISTORY: usize = 4096;
/// How long a read waits for the cache to catch up before going to the
/// backing store instead.
const CATCH_UP: Duration = Duration::from_secs(3);
/// How often a watch that wants progress is told how far it has got, when
/// it has got further. Often enough that a watch ending on its timeout
/// resumes well inside the window; rare enough to cost idle watches little.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

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

    /// The backlog after `after`, the revision it brings the watch up to
    /// and a live subscription, taken together under the lock; `None` when
    /// `after` is outside the window.
    fn subscribe(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Option<(Vec<Event>, Revision, broadcast::Receiver<Event>)> {
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
        Some((backlog, data.revision, data.events.subscribe()))
    }

    /// A watch served from memory; `None` when `after` is outside the
    /// window.
    fn watch_cached(
        &self,
        prefix: &str,
        after: Revision,
        progress: bool,
    ) -> Option<ProgressStream> {
        let (backlog, upto, live) = self.subscribe(prefix, after)?;
        let (tx, rx) = mpsc::channel(256);
        let watcher = Watcher {
            state: self.state.clone(),
            prefix: prefix.to_string(),
            tx,
        };
        tokio::spawn(watcher.forward(after, backlog, upto, live, progress));
        Some(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
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
        let Some(items) = self.watch_cached(prefix, after, false) else {
            return self.inner.watch(prefix, after).await;
        };
        Ok(Box::pin(items.filter_map(|item| {
            futures::future::ready(match item {
                Ok(WatchItem::Event(event)) => Some(Ok(event)),
                Ok(WatchItem::Progress(_)) => None,
                Err(err) => Some(Err(err)),
            })
        })))
    }

    async fn watch_with_progress(&self, prefix: &str, after: Revision) -> Result<ProgressStream> {
        match self.watch_cached(prefix, after, true) {
            Some(items) => Ok(items),
            None => self.inner.watch_with_progress(prefix, after).await,
        }
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

/// One watch served from memory: what it watches and where it sends.
struct Watcher {
    state: Arc<State>,
    prefix: String,
    tx: mpsc::Sender<Result<WatchItem>>,
}

impl Watcher {
    /// Deliver a watch's backlog, then live events; a watcher that falls
    /// behind is caught up from history, or ended (it re-watches) when its
    /// place has left the window. With `progress`, it is told now and then
    /// how far it has got, skipped events of other keys included.
    async fn forward(
        self,
        after: Revision,
        backlog: Vec<Event>,
        upto: Revision,
        mut live: broadcast::Receiver<Event>,
        progress: bool,
    ) {
        for event in backlog {
            if !self.send(WatchItem::Event(event.to_watch_event())).await {
                return;
            }
        }
        // Every event up to `last` has been sent or is not this watch's:
        // the backlog covered the cache up to `upto`, and live events come
        // in revision order after it.
        let mut last = upto;
        let mut told = after;
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                r = live.recv() => r,
                _ = tick.tick(), if progress => {
                    if last > told {
                        told = last;
                        if !self.send(WatchItem::Progress(last)).await {
                            return;
                        }
                    }
                    continue;
                }
                _ = self.tx.closed() => return,
            };
            match received {
                Ok(event) => {
                    if event.kv.mod_revision <= last {
                        continue;
                    }
                    last = event.kv.mod_revision;
                    if in_prefix(&event.kv.key, &self.prefix)
                        && !self.send(WatchItem::Event(event.to_watch_event())).await
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let Some((events, upto)) = self.catch_up(last, &mut live) else {
                        let compacted = self.read().window_start;
                        let _ = self
                            .tx
                            .send(Err(Error::Compacted {
                                requested: last + 1,
                                compacted,
                            }))
                            .await;
                        return;
                    };
                    for event in events {
                        if !self.send(WatchItem::Event(event.to_watch_event())).await {
                            return;
                        }
                    }
                    last = upto;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// This watch's events after `last` from history, the revision they
    /// bring it up to, and a fresh subscription for what follows; `None`
    /// when `last` has left the window.
    fn catch_up(
        &self,
        last: Revision,
        live: &mut broadcast::Receiver<Event>,
    ) -> Option<(Vec<Event>, Revision)> {
        let data = self.read();
        if last < data.window_start {
            return None;
        }
        *live = data.events.subscribe();
        let events = data
            .history
            .iter()
            .filter(|e| e.kv.mod_revision > last && in_prefix(&e.kv.key, &self.prefix))
            .cloned()
            .collect();
        Some((events, data.revision))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.state.data.read().unwrap_or_else(|p| p.into_inner())
    }

    /// False when the watch's reader has gone.
    async fn send(&self, item: WatchItem) -> bool {
        self.tx.send(Ok(item)).await.is_ok()
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
        /// Watches the backing store served.
        watches: std::sync::atomic::AtomicUsize,
    }

    impl Breakable {
        fn open(dir: &tempfile::TempDir) -> Arc<Breakable> {
            Arc::new(Breakable {
                inner: SqliteStore::open(&dir.path().join("db")).unwrap(),
                cut: watch::channel(0).0,
                watches: Default::default(),
            })
        }

        fn watches(&self) -> usize {
            self.watches.load(std::sync::atomic::Ordering::SeqCst)
        }
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
            self.watches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        let breakable = Breakable::open(&dir);
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

    /// A watch of a prefix nobody writes is told it got past the writes to
    /// other keys, so resuming it after them is served from the window
    /// rather than by the backing store (or refused as compacted).
    #[tokio::test]
    async fn progress_keeps_a_quiet_watch_inside_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let breakable = Breakable::open(&dir);
        let store = CachedStore::new(breakable.clone());
        store.create("/quiet/a", b"1".to_vec(), None).await.unwrap();
        let (_, start) = store.get("/quiet/a", None).await.unwrap();
        let mut quiet = store.watch_with_progress("/quiet/", start).await.unwrap();

        // More writes elsewhere than the window holds.
        for i in 0..HISTORY + 1000 {
            store
                .create(&format!("/busy/{i}"), Vec::new(), None)
                .await
                .unwrap();
        }
        let written = store.current_revision().await.unwrap();
        let resume = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match quiet.next().await.unwrap().unwrap() {
                    WatchItem::Progress(rev) if rev >= written => break rev,
                    WatchItem::Progress(_) => {}
                    WatchItem::Event(ev) => panic!("an event of another prefix: {}", ev.kv.key),
                }
            }
        })
        .await
        .expect("the quiet watch was never told it got past the writes");
        assert_eq!(resume, written);
        assert!(resume - start > HISTORY as i64);

        // Resuming from there is served from memory and sees what follows.
        let backing_watches = breakable.watches();
        let mut again = store.watch_with_progress("/quiet/", resume).await.unwrap();
        assert_eq!(
            breakable.watches(),
            backing_watches,
            "went to the backing store"
        );
        store
            .update("/quiet/a", b"2".to_vec(), start, None)
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let WatchItem::Event(ev) = again.next().await.unwrap().unwrap() {
                    break ev;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(
            (next.kind, next.kv.value),
            (EventKind::Update, b"2".to_vec())
        );
    }
}
