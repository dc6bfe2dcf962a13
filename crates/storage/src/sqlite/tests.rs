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
