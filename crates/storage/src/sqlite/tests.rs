//! Smoke tests of SQLite specifics; the behaviour battery in
//! `tests/battery.rs` covers the `Store` contract on every backend.

use futures::StreamExt;

use super::*;
use crate::EventKind;

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db/state.db")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn write_read_watch_roundtrip() {
    let (_dir, store) = open();
    let a = store.create("/r/a", b"1".to_vec(), None).await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    let a2 = store.update("/r/a", b"2".to_vec(), 1, None).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
    assert!(matches!(
        store.update("/r/a", b"3".to_vec(), 1, None).await,
        Err(Error::Conflict { current, .. }) if current.mod_revision == 2 && current.value == b"2"
    ));
    let (old, rev) = store.get("/r/a", Some(1)).await.unwrap();
    assert_eq!((old.unwrap().value, rev), (b"1".to_vec(), 2));
    let (deleted, rev) = store.delete("/r/a", Some(2)).await.unwrap();
    assert_eq!((deleted.value, rev), (b"2".to_vec(), 3));

    let mut w = store.watch("/r/", 0).await.unwrap();
    let kinds: Vec<_> = (0..3).map(|_| ()).collect::<Vec<_>>();
    let mut seen = Vec::new();
    for _ in kinds {
        let ev = w.next().await.unwrap().unwrap();
        seen.push((
            ev.kind,
            ev.revision(),
            ev.kv.value.clone(),
            ev.prev.map(|p| p.value.clone()),
        ));
    }
    assert_eq!(
        seen,
        vec![
            (EventKind::Create, 1, b"1".to_vec(), None),
            (EventKind::Update, 2, b"2".to_vec(), Some(b"1".to_vec())),
            (EventKind::Delete, 3, b"2".to_vec(), Some(b"2".to_vec())),
        ]
    );
    store.create("/r/b", b"live".to_vec(), None).await.unwrap();
    let ev = w.next().await.unwrap().unwrap();
    assert_eq!((ev.kind, ev.revision()), (EventKind::Create, 4));
}

#[tokio::test]
async fn list_pages_and_past_revisions() {
    let (_dir, store) = open();
    for i in 0..10 {
        store
            .create(&format!("/p/{i}"), vec![i], None)
            .await
            .unwrap();
    }
    store
        .create("/pq", b"outside".to_vec(), None)
        .await
        .unwrap();
    let page = store
        .list(
            "/p/",
            ListOptions {
                limit: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
    assert!(page.more);
    assert_eq!(page.remaining, 6);
    store.delete("/p/5", None).await.unwrap();
    let next = store
        .list(
            "/p/",
            ListOptions {
                start_after: Some(page.items[3].key.clone()),
                limit: 100,
                revision: Some(page.revision),
            },
        )
        .await
        .unwrap();
    // The snapshot still holds /p/5.
    assert_eq!(next.items.len(), 6);
    assert!(!next.more);
    assert_eq!(store.count("/p/").await.unwrap(), 9);
}

#[tokio::test]
async fn second_open_of_same_file_is_refused() {
    let (dir, _store) = open();
    let err = SqliteStore::open(&dir.path().join("db/state.db"))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_file_is_named_in_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let err = SqliteStore::open(&path).err().unwrap().to_string();
    assert!(
        err.contains(path.to_str().unwrap()) && err.contains("not an SQLite database"),
        "{err}"
    );
}

#[tokio::test]
async fn compaction_keeps_latest_values() {
    let (_dir, store) = open();
    store.create("/c/a", b"1".to_vec(), None).await.unwrap();
    store.update("/c/a", b"2".to_vec(), 1, None).await.unwrap();
    store.create("/c/b", b"x".to_vec(), None).await.unwrap();
    store.delete("/c/b", None).await.unwrap();
    store.create("/c/c", b"y".to_vec(), None).await.unwrap();
    store.compact(5).await.unwrap();
    assert!(matches!(
        store.get("/c/a", Some(4)).await,
        Err(Error::Compacted { .. })
    ));
    assert_eq!(
        store.get("/c/a", Some(5)).await.unwrap().0.unwrap().value,
        b"2"
    );
    assert!(store.get("/c/b", Some(5)).await.unwrap().0.is_none());
    let mut w = store.watch("/c/", 2).await.unwrap();
    assert!(matches!(w.next().await, Some(Err(Error::Compacted { .. }))));
    let mut w = store.watch("/c/", 4).await.unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().revision(), 5);
}

/// What a paged list at a past revision costs (an informer relisting
/// after its watch fell out of the watch cache's window reads every page
/// after the first at the first page's revision), against the query that
/// grouped the whole rest of the range by key for each page. Prints ms
/// per list of all pages for both and their ratio.
/// `cargo test -p rkube-storage --release --lib past_revision_list_cost -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "timing; run by hand"]
async fn past_revision_list_cost() {
    // `LIST_KEYS` for another size.
    let keys: usize = std::env::var("LIST_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    const PAGE: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    let value = vec![b'v'; 3000];
    let key = |i: usize| format!("/registry/pods/ns/p-{:08x}", (i * 2654435761) % (1 << 32));
    for round in 0..3 {
        let writes = (0..keys).map(|i| {
            let store = &store;
            let value = value.clone();
            async move {
                match round {
                    0 => store.create(&key(i), value, None).await.unwrap(),
                    _ => {
                        let (kv, _) = store.get(&key(i), None).await.unwrap();
                        let rev = kv.unwrap().mod_revision;
                        store.update(&key(i), value, rev, None).await.unwrap()
                    }
                }
            }
        });
        futures::stream::iter(writes)
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    }
    let at = store.current_revision().await.unwrap();
    store
        .create("/registry/pods/ns/zz", vec![], None)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let mut opts = crate::ListOptions {
        limit: PAGE,
        revision: Some(at),
        ..Default::default()
    };
    let mut new = Vec::new();
    loop {
        let page = store.list("/registry/pods/", opts.clone()).await.unwrap();
        opts.start_after = page.items.last().map(|kv| kv.key.clone());
        new.extend(page.items.into_iter().map(|kv| (kv.key, kv.mod_revision)));
        if !page.more {
            break;
        }
    }
    let new_ms = started.elapsed().as_secs_f64() * 1e3;

    let conn = rusqlite::Connection::open(&path).unwrap();
    let started = std::time::Instant::now();
    let mut old = Vec::new();
    let mut after: Vec<u8> = b"/registry/pods/".to_vec();
    loop {
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, create_rev, rev, value FROM ( \
                   SELECT key, MAX(rev) AS rev, create_rev, deleted, value FROM log \
                   WHERE key > ?1 AND key < ?2 AND rev <= ?3 GROUP BY key) \
                 WHERE deleted = 0 ORDER BY key LIMIT ?4",
            )
            .unwrap();
        let rows: Vec<(Vec<u8>, i64)> = stmt
            .query_map(
                rusqlite::params![after, b"/registry/pods0".to_vec(), at, PAGE as i64 + 1],
                |r| Ok((r.get(0)?, r.get(2)?)),
            )
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let more = rows.len() > PAGE;
        let page = &rows[..rows.len().min(PAGE)];
        let _remaining: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM ( \
                   SELECT MAX(rev), deleted FROM log WHERE key > ?1 AND key < ?2 AND rev <= ?3 \
                   GROUP BY key) WHERE deleted = 0",
                rusqlite::params![page.last().unwrap().0, b"/registry/pods0".to_vec(), at],
                |r| r.get(0),
            )
            .unwrap();
        after = page.last().unwrap().0.clone();
        old.extend(
            page.iter()
                .map(|(k, r)| (String::from_utf8(k.clone()).unwrap(), *r)),
        );
        if !more {
            break;
        }
    }
    let old_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(new, old);
    assert_eq!(new.len(), keys);
    println!(
        "{keys} keys x 3 revisions, pages of {PAGE} at a past revision: \
         grouping query {old_ms:.0} ms, key walk {new_ms:.0} ms, ratio {:.2}",
        new_ms / old_ms
    );
}
