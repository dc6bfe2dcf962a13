//! The watch cache's reads, watches, reloads and progress notes.

use super::*;
use crate::sqlite::SqliteStore;
use crate::Error;

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
        (ev.kind, ev.revision(), ev.prev.unwrap().value.clone()),
        (EventKind::Update, 2, b"1".to_vec())
    );
    store.delete("/w/a", None).await.unwrap();
    let ev = w.next().await.unwrap().unwrap();
    assert_eq!(
        (ev.kind, ev.revision(), ev.kv.value.clone()),
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
    async fn get(&self, key: &str, rev: Option<Revision>) -> Result<(Option<KeyValue>, Revision)> {
        self.inner.get(key, rev).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse> {
        self.inner.list(prefix, opts).await
    }
    async fn count(&self, prefix: &str) -> Result<i64> {
        self.inner.count(prefix).await
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
            seen.push(ev.unwrap().kv.key.clone());
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
        (next.kind, next.kv.value.clone()),
        (EventKind::Update, b"2".to_vec())
    );
}

/// Each watched prefix has its own live channel, shared by its watches
/// and forgotten once none follows it.
#[tokio::test]
async fn live_channels_are_per_prefix_and_forgotten() {
    let (_dir, store) = cached().await;
    store.create("/c/seed", vec![], None).await.unwrap();
    let (_, rev) = store.get("/c/seed", None).await.unwrap();
    let channels = |store: &CachedStore| -> Vec<(String, usize)> {
        let data = store.read();
        let by_prefix = data.events.lock();
        by_prefix
            .iter()
            .map(|(p, tx)| (p.clone(), tx.receiver_count()))
            .collect()
    };
    let mut a1 = store.watch("/c/a/", rev).await.unwrap();
    let a2 = store.watch("/c/a/", rev).await.unwrap();
    let b = store.watch("/c/b/", rev).await.unwrap();
    assert_eq!(
        channels(&store),
        [("/c/a/".to_string(), 2), ("/c/b/".to_string(), 1)]
    );
    store.create("/c/b/1", vec![], None).await.unwrap();
    store.create("/c/a/1", vec![], None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(30), a1.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.kv.key, "/c/a/1");
    drop((a2, b));
    // The watchers' tasks notice their readers went; the next write
    // forgets the channel nobody follows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    while channels(&store) != [("/c/a/".to_string(), 1)] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            channels(&store)
        );
        i += 1;
        store
            .create(&format!("/c/z/{i}"), vec![], None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A watch whose reader falls further behind than the window goes on
/// from the backing store: every change, in order, no 410 Gone that would
/// make its client list everything again.
#[tokio::test]
async fn a_watch_behind_the_window_goes_on_from_the_backing_store() {
    let (_dir, store) = cached().await;
    store.create("/slow/seed", vec![], None).await.unwrap();
    let (_, start) = store.get("/slow/seed", None).await.unwrap();
    let mut slow = store.watch("/slow/", start).await.unwrap();
    // Not read while more than the window and a live channel's worth are
    // written under its prefix.
    let total = HISTORY + LIVE + 500;
    let writes = (0..total).map(|i| {
        let store = &store;
        async move {
            store
                .create(&format!("/slow/{i:06}"), vec![], None)
                .await
                .unwrap()
        }
    });
    futures::stream::iter(writes)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let mut last = start;
    let mut seen = 0;
    while seen < total {
        let ev = tokio::time::timeout(Duration::from_secs(60), slow.next())
            .await
            .expect("the slow watch goes on")
            .expect("the slow watch is not ended")
            .expect("no error (410 Gone) for the slow watch");
        assert!(
            ev.revision() > last,
            "out of order: {} after {last}",
            ev.revision()
        );
        last = ev.revision();
        seen += 1;
    }
    assert_eq!(last, store.current_revision().await.unwrap());
}

/// What fanning changes out to many watches of one prefix costs, with and
/// without as many writes under another prefix between them (the simulated
/// kubelets' pod watches while Leases and Events are written). Prints µs
/// per change of the watched prefix; a single-threaded runtime, so wall
/// time is this process's CPU time.
/// `cargo test -p rkube-storage --release --lib fan_out_cost -- --ignored --nocapture`
#[tokio::test(flavor = "current_thread")]
#[ignore = "timing; run by hand"]
async fn fan_out_cost() {
    const WATCHERS: usize = 300;
    const CHANGES: usize = 2000;
    let (_dir, store) = cached().await;
    store.create("/registry/other", vec![], None).await.unwrap();
    store.get("/registry/other", None).await.unwrap();
    let value = vec![b'x'; 3000];
    let mut took = Vec::new();
    for noise in [false, true] {
        let start_rev = store.read().revision;
        let mut done = Vec::new();
        for _ in 0..WATCHERS {
            let mut w = store.watch("/registry/pods/", start_rev).await.unwrap();
            done.push(tokio::spawn(async move {
                for _ in 0..CHANGES {
                    w.next().await.unwrap().unwrap();
                }
            }));
        }
        let started = std::time::Instant::now();
        let mut rev = start_rev;
        let change = |key: String, rev: Revision| WatchEvent {
            kind: EventKind::Create,
            kv: Arc::new(KeyValue {
                key,
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            }),
            prev: None,
        };
        for i in 0..CHANGES {
            if noise {
                rev += 1;
                let ev = change(format!("/registry/events/ns/e{i}-{rev}"), rev);
                apply(&store.state, ev);
            }
            rev += 1;
            let ev = change(format!("/registry/pods/ns/p{i}-{rev}"), rev);
            apply(&store.state, ev);
            if i % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for d in done {
            d.await.unwrap();
        }
        let per = started.elapsed().as_secs_f64() * 1e6 / CHANGES as f64;
        println!(
            "fan-out to {WATCHERS} watches, other writes between: {noise}: {per:.1} µs per change"
        );
        took.push(per);
    }
    println!("ratio with/without other writes: {:.2}", took[1] / took[0]);
}
