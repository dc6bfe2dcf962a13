//! Watches: every change after the start revision exactly once, in revision
//! order, with the previous value on updates and deletes, limited to the
//! prefix. (Upstream: etcd's watch with `prev_kv`, which the apiserver's
//! watch cache and every informer depend on; a missed or repeated event is a
//! stale cache.)
//!
//! "Nothing more" is checked without sleeping: after the expected events,
//! the test writes a sentinel key, and the very next event must be it.

use std::collections::{BTreeMap, BTreeSet};

use rkube_storage::{EventKind, KeyValue, ListOptions, Revision, Store, WatchEvent, WatchStream};

use crate::{next_event, prefix, Harness};

/// What a test expects of one event.
#[derive(Debug)]
struct Expect<'a> {
    kind: EventKind,
    kv: &'a KeyValue,
    prev: Option<&'a KeyValue>,
}

fn assert_event(event: &WatchEvent, want: &Expect<'_>) {
    assert_eq!(event.kind, want.kind, "kind of {event:?}");
    assert_eq!(event.kv.key, want.kv.key, "key of {event:?}");
    assert_eq!(event.kv.value, want.kv.value, "value of {event:?}");
    assert_eq!(
        event.kv.mod_revision, want.kv.mod_revision,
        "revision of {event:?}"
    );
    assert_eq!(event.revision(), want.kv.mod_revision);
    if want.kind != EventKind::Delete {
        assert_eq!(
            event.kv.create_revision, want.kv.create_revision,
            "{event:?}"
        );
    }
    match (want.prev, &event.prev) {
        (None, None) => {}
        (Some(want), Some(got)) => {
            assert_eq!(got.key, want.key, "prev of {event:?}");
            assert_eq!(got.value, want.value, "prev value of {event:?}");
            assert_eq!(
                got.mod_revision, want.mod_revision,
                "prev revision of {event:?}"
            );
            assert_eq!(
                got.create_revision, want.create_revision,
                "prev of {event:?}"
            );
        }
        (want, got) => panic!("prev of {event:?}: expected {want:?}, got {got:?}"),
    }
}

/// A delete as a watch reports it: the last value at the delete's revision.
fn deleted(last: &KeyValue, at: Revision) -> KeyValue {
    KeyValue {
        mod_revision: at,
        ..last.clone()
    }
}

/// Write a sentinel under `p` and require it to be the next event: proof
/// that nothing unexpected (a duplicate, a stray key) came before it.
async fn expect_sentinel(s: &dyn Store, watch: &mut WatchStream, p: &str, name: &str) {
    let kv = s
        .create(&format!("{p}{name}"), b"sentinel".to_vec(), None)
        .await
        .unwrap();
    let event = next_event(watch).await;
    assert_event(
        &event,
        &Expect {
            kind: EventKind::Create,
            kv: &kv,
            prev: None,
        },
    );
}

/// A scripted history of five writes under `p`; returns what each event
/// should look like, as owned key-values: (kind, kv, prev).
async fn script(s: &dyn Store, p: &str) -> Vec<(EventKind, KeyValue, Option<KeyValue>)> {
    let a = format!("{p}a");
    let b = format!("{p}b");
    let a1 = s.create(&a, b"a1".to_vec(), None).await.unwrap();
    let a2 = s
        .update(&a, b"a2".to_vec(), a1.mod_revision, None)
        .await
        .unwrap();
    let b1 = s.create(&b, b"b1".to_vec(), None).await.unwrap();
    let (_, a_gone) = s.delete(&a, Some(a2.mod_revision)).await.unwrap();
    let b2 = s
        .update(&b, b"b2".to_vec(), b1.mod_revision, None)
        .await
        .unwrap();
    vec![
        (EventKind::Create, a1.clone(), None),
        (EventKind::Update, a2.clone(), Some(a1)),
        (EventKind::Create, b1.clone(), None),
        (EventKind::Delete, deleted(&a2, a_gone), Some(a2)),
        (EventKind::Update, b2, Some(b1)),
    ]
}

async fn expect_script(
    watch: &mut WatchStream,
    script: &[(EventKind, KeyValue, Option<KeyValue>)],
) {
    for (kind, kv, prev) in script {
        let event = next_event(watch).await;
        assert_event(
            &event,
            &Expect {
                kind: *kind,
                kv,
                prev: prev.as_ref(),
            },
        );
    }
}

pub async fn watch_live_events(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("watch-live");
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch(&p, start).await.unwrap();

    let history = script(s.as_ref(), &p).await;
    expect_script(&mut watch, &history).await;
    expect_sentinel(s.as_ref(), &mut watch, &p, "sentinel").await;

    // A second watch from "now" sees only what comes after it.
    let now = s.current_revision().await.unwrap();
    let mut later = s.watch(&p, now).await.unwrap();
    let more = s
        .create(&format!("{p}c"), b"c".to_vec(), None)
        .await
        .unwrap();
    let event = next_event(&mut later).await;
    assert_event(
        &event,
        &Expect {
            kind: EventKind::Create,
            kv: &more,
            prev: None,
        },
    );
    // The first watch sees it too, right after its sentinel.
    let event = next_event(&mut watch).await;
    assert_event(
        &event,
        &Expect {
            kind: EventKind::Create,
            kv: &more,
            prev: None,
        },
    );
}

pub async fn watch_replays_history_then_live(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("watch-replay");
    let start = s.current_revision().await.unwrap();
    let history = script(s.as_ref(), &p).await;

    // From before the history: all of it, then live events.
    let mut watch = s.watch(&p, start).await.unwrap();
    expect_script(&mut watch, &history).await;
    let live = script(s.as_ref(), &format!("{p}live/")).await;
    expect_script(&mut watch, &live).await;
    expect_sentinel(s.as_ref(), &mut watch, &p, "sentinel-1").await;

    // From the middle of the history: only what came after that revision.
    let middle = history[2].1.mod_revision;
    let mut watch = s.watch(&p, middle).await.unwrap();
    expect_script(&mut watch, &history[3..]).await;
    expect_script(&mut watch, &live).await;
    let event = next_event(&mut watch).await;
    assert_eq!(event.kv.key, format!("{p}sentinel-1"));
    expect_sentinel(s.as_ref(), &mut watch, &p, "sentinel-2").await;
}

pub async fn watch_prefix_filtering(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("watch-prefix");
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch(&format!("{p}a/"), start).await.unwrap();

    let inside = s
        .create(&format!("{p}a/x"), b"1".to_vec(), None)
        .await
        .unwrap();
    // A sibling whose name starts with the same letters, the directory key
    // itself, and unrelated keys: none of them are under `a/`.
    for key in [
        format!("{p}ab/x"),
        format!("{p}a"),
        format!("{p}b/x"),
        "/registry/pods/a/x".to_string(),
    ] {
        let kv = s.create(&key, b"no".to_vec(), None).await.unwrap();
        s.update(&key, b"still no".to_vec(), kv.mod_revision, None)
            .await
            .unwrap();
        s.delete(&key, None).await.unwrap();
    }
    let nested = s
        .create(&format!("{p}a/y/z"), b"2".to_vec(), None)
        .await
        .unwrap();

    let event = next_event(&mut watch).await;
    assert_event(
        &event,
        &Expect {
            kind: EventKind::Create,
            kv: &inside,
            prev: None,
        },
    );
    let event = next_event(&mut watch).await;
    assert_event(
        &event,
        &Expect {
            kind: EventKind::Create,
            kv: &nested,
            prev: None,
        },
    );
    expect_sentinel(s.as_ref(), &mut watch, &format!("{p}a/"), "sentinel").await;
}

pub async fn watch_order_under_concurrent_writers(h: &mut dyn Harness) {
    const WRITERS: usize = 4;
    const KEYS: usize = 10;
    // Each writer: create, update twice, delete every other key.
    const WRITES_PER_WRITER: usize = KEYS * 3 + KEYS / 2;
    let s = h.store();
    let p = prefix("watch-concurrent");
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch(&p, start).await.unwrap();

    // The watcher reads while the writers write.
    let total = WRITERS * WRITES_PER_WRITER;
    let watcher = tokio::spawn(async move {
        let mut events = Vec::with_capacity(total);
        for _ in 0..total {
            events.push(next_event(&mut watch).await);
        }
        (events, watch)
    });

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (s, p) = (s.clone(), p.clone());
        writers.push(tokio::spawn(async move {
            let mut acked: Vec<(Revision, EventKind, String)> = Vec::new();
            for k in 0..KEYS {
                let key = format!("{p}w{w}-k{k}");
                let kv = s.create(&key, b"0".to_vec(), None).await.unwrap();
                acked.push((kv.mod_revision, EventKind::Create, key.clone()));
                let kv = s
                    .update(&key, b"1".to_vec(), kv.mod_revision, None)
                    .await
                    .unwrap();
                acked.push((kv.mod_revision, EventKind::Update, key.clone()));
                let kv = s
                    .update(&key, b"2".to_vec(), kv.mod_revision, None)
                    .await
                    .unwrap();
                acked.push((kv.mod_revision, EventKind::Update, key.clone()));
                if k % 2 == 0 {
                    let (_, rev) = s.delete(&key, Some(kv.mod_revision)).await.unwrap();
                    acked.push((rev, EventKind::Delete, key));
                }
            }
            acked
        }));
    }
    let mut acked = BTreeMap::new();
    for writer in writers {
        for (rev, kind, key) in writer.await.unwrap() {
            assert!(
                acked.insert(rev, (kind, key)).is_none(),
                "two writes acknowledged at {rev}"
            );
        }
    }
    assert_eq!(acked.len(), total);

    let (events, mut watch) = watcher.await.unwrap();
    let mut last = start;
    for event in &events {
        assert!(
            event.revision() > last,
            "revision {} after {last}",
            event.revision()
        );
        last = event.revision();
        let (kind, key) = acked
            .get(&event.revision())
            .unwrap_or_else(|| panic!("event at a revision no writer got: {event:?}"));
        assert_eq!((event.kind, &event.kv.key), (*kind, key));
    }
    let seen: BTreeSet<Revision> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(seen.len(), total, "every acknowledged write seen once");

    // Folding the events gives the state a list shows.
    let mut state: BTreeMap<String, KeyValue> = BTreeMap::new();
    for event in events {
        match event.kind {
            EventKind::Delete => assert!(state.remove(&event.kv.key).is_some()),
            EventKind::Create => assert!(state
                .insert(event.kv.key.clone(), (*event.kv).clone())
                .is_none()),
            EventKind::Update => assert!(state
                .insert(event.kv.key.clone(), (*event.kv).clone())
                .is_some()),
        }
    }
    let listed = s.list(&p, ListOptions::default()).await.unwrap();
    assert_eq!(listed.items, state.into_values().collect::<Vec<_>>());
    expect_sentinel(s.as_ref(), &mut watch, &p, "sentinel").await;
}
