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
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};

use crate::{
    EventKind, KeyValue, ListOptions, ListResponse, ProgressStream, Result, Revision, Store,
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
/// How many live events a watched prefix's channel holds for a watcher
/// that has not taken them yet; one that falls further behind catches up
/// from the history.
const LIVE: usize = 1024;

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
            kv: self.kv.clone(),
            prev: self.prev.clone(),
        }
    }
}

#[derive(Default)]
struct Data {
    /// False while (re)loading: reads then go to the backing store.
    ready: bool,
    revision: Revision,
    kvs: BTreeMap<String, Arc<KeyValue>>,
    history: VecDeque<Event>,
    /// Every event after this revision is in `history`.
    window_start: Revision,
    /// Live events for watches. Replaced on every (re)load: dropping the
    /// old senders ends the watches that were following them, since the
    /// events missed while the cache was reloading are in no history they
    /// could read. Their clients watch again from their last revision.
    events: Channels,
}

/// Live events, one channel per watched prefix. A watcher wakes only for
/// changes under its prefix: one channel for everything woke each of the
/// simulated kubelets' pod watches for every Lease, Event and status write
/// of the cluster (upstream's cacher likewise has one per resource).
#[derive(Default)]
struct Channels {
    /// Few: one per distinct prefix being watched (a resource, or a
    /// resource in one namespace).
    by_prefix: Mutex<Vec<(String, broadcast::Sender<Event>)>>,
}

impl Channels {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, broadcast::Sender<Event>)>> {
        self.by_prefix.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live events under `prefix` from now on.
    fn subscribe(&self, prefix: &str) -> broadcast::Receiver<Event> {
        let mut channels = self.lock();
        if let Some((_, tx)) = channels.iter().find(|(p, _)| p == prefix) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(LIVE);
        channels.push((prefix.to_string(), tx));
        rx
    }

    /// Give `event` to the prefixes it is under; forget the channels
    /// nobody follows any more.
    fn send(&self, event: &Event) {
        self.lock().retain(|(prefix, tx)| {
            if tx.receiver_count() == 0 {
                return false;
            }
            if in_prefix(&event.kv.key, prefix) {
                let _ = tx.send(event.clone());
            }
            true
        });
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
        Some((backlog, data.revision, data.events.subscribe(prefix)))
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
            inner: self.inner.clone(),
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
            data.events = Channels::default();
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
        events: Channels::default(),
    };
    tracing::debug!(revision, keys = data.kvs.len(), "watch cache loaded");
    drop(data);
    state.revision.send_replace(revision);
    Ok(events)
}

fn apply(state: &State, event: WatchEvent) {
    let rev = event.revision();
    let kv = event.kv;
    let mut data = state.data.write().unwrap_or_else(|p| p.into_inner());
    let prev = match event.kind {
        EventKind::Delete => data.kvs.remove(&kv.key),
        EventKind::Create | EventKind::Update => data.kvs.insert(kv.key.clone(), kv.clone()),
    };
    let prev = prev.or(event.prev);
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
    data.events.send(&cached);
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
    /// Where a watcher that fell out of the window goes on from.
    inner: Arc<dyn Store>,
    prefix: String,
    tx: mpsc::Sender<Result<WatchItem>>,
}

impl Watcher {
    /// Deliver a watch's backlog, then live events; a watcher that falls
    /// behind is caught up from history, or from the backing store when
    /// its place has left the window. With `progress`, it is told now and
    /// then how far it has got, skipped events of other keys included.
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
                    // Every change under the prefix up to the cache's
                    // revision went into `live` under the lock that moved
                    // the revision: with none of them waiting there, this
                    // watch has been given them all.
                    {
                        let data = self.read();
                        if live.is_empty() && data.revision > last {
                            last = data.revision;
                        }
                    }
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
                        drop(live);
                        self.follow_inner(last, progress).await;
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
        *live = data.events.subscribe(&self.prefix);
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

    /// Go on after `last` from the backing store, whose history reaches
    /// further back than the window. Ending the watch as compacted (410
    /// Gone) instead made its client list everything again: an informer
    /// that fell a few seconds behind in a burst of writes relisted ten
    /// thousand pods, and saw nothing new meanwhile. The backing store
    /// still ends it so when `last` has been compacted there too.
    async fn follow_inner(self, last: Revision, progress: bool) {
        let items = if progress {
            self.inner.watch_with_progress(&self.prefix, last).await
        } else {
            self.inner.watch(&self.prefix, last).await.map(|events| {
                let items: ProgressStream = Box::pin(events.map(|e| e.map(WatchItem::Event)));
                items
            })
        };
        let mut items = match items {
            Ok(items) => items,
            Err(err) => {
                let _ = self.tx.send(Err(err)).await;
                return;
            }
        };
        loop {
            let item = tokio::select! {
                item = items.next() => item,
                _ = self.tx.closed() => return,
            };
            let Some(item) = item else { return };
            let end = item.is_err();
            if self.tx.send(item).await.is_err() || end {
                return;
            }
        }
    }

    /// False when the watch's reader has gone.
    async fn send(&self, item: WatchItem) -> bool {
        self.tx.send(Ok(item)).await.is_ok()
    }
}

#[cfg(test)]
mod tests;
