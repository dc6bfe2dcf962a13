//! What happens to data over time: surviving a restart of the backend,
//! compaction of old history, and keys that expire. (Upstream: a watch
//! resumed from its last resourceVersion after an apiserver or etcd restart;
//! the apiserver's compactor and the 410 Gone it turns `Compacted` into;
//! etcd leases, which Kubernetes uses for Events' TTL.)

use std::time::Duration;

use rkube_storage::{Error, EventKind, ListOptions, Revision};

use crate::{eventually, must_get, next_event, next_item, prefix, Harness, DEADLINE};

pub async fn watch_resumes_after_restart(h: &mut dyn Harness) {
    let p = prefix("restart");
    let key = |i: usize| format!("{p}k{i}");
    let s = h.store();
    let start = s.current_revision().await.unwrap();
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(
            s.create(&key(i), format!("v{i}").into_bytes(), None)
                .await
                .unwrap(),
        );
    }
    // The watcher has seen three of the five writes when the server dies.
    let mut watch = s.watch(&p, start).await.unwrap();
    for kv in &before[..3] {
        assert_eq!(*next_event(&mut watch).await.kv, *kv);
    }
    let last_seen: Revision = before[2].mod_revision;
    drop(watch);
    drop(s);

    h.restart().await;

    let s = h.store();
    assert_eq!(
        s.current_revision().await.unwrap(),
        before[4].mod_revision,
        "no write lost"
    );
    for kv in &before {
        assert_eq!(must_get(s.as_ref(), &kv.key).await, *kv);
    }
    let mut after = Vec::new();
    let k3 = s
        .update(&key(3), b"v3'".to_vec(), before[3].mod_revision, None)
        .await
        .unwrap();
    assert!(
        k3.mod_revision > before[4].mod_revision,
        "revisions go on from where they were"
    );
    after.push(k3);
    after.push(s.create(&key(5), b"v5".to_vec(), None).await.unwrap());

    // Resume from the last revision seen: the two writes it missed before
    // the restart, then the ones since, then nothing else.
    let mut watch = s.watch(&p, last_seen).await.unwrap();
    for kv in &before[3..] {
        let event = next_event(&mut watch).await;
        assert_eq!((event.kind, &*event.kv), (EventKind::Create, kv));
    }
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, &*event.kv), (EventKind::Update, &after[0]));
    assert_eq!(
        event.prev.as_deref(),
        Some(&before[3]),
        "prev across the restart"
    );
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, &*event.kv), (EventKind::Create, &after[1]));
    // Live events keep coming on the resumed watch.
    let live = s.create(&key(6), b"v6".to_vec(), None).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, &*event.kv), (EventKind::Create, &live));
}

pub async fn compaction(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("compaction");
    let (k, j, m) = (format!("{p}k"), format!("{p}j"), format!("{p}m"));
    let k1 = s.create(&k, b"k1".to_vec(), None).await.unwrap();
    let k2 = s
        .update(&k, b"k2".to_vec(), k1.mod_revision, None)
        .await
        .unwrap();
    let j1 = s.create(&j, b"j1".to_vec(), None).await.unwrap();
    let k3 = s
        .update(&k, b"k3".to_vec(), k2.mod_revision, None)
        .await
        .unwrap();
    let (_, j_gone) = s.delete(&j, None).await.unwrap();
    let m1 = s.create(&m, b"m1".to_vec(), None).await.unwrap();

    let r = k3.mod_revision;
    s.compact(r).await.unwrap();

    // Reads before r are gone, with the requested revision named.
    for rev in [k1.mod_revision, k2.mod_revision, r - 1] {
        let err = assert_err!(s.get(&k, Some(rev)).await, Error::Compacted { .. });
        let Error::Compacted { requested, .. } = err else {
            unreachable!()
        };
        assert_eq!(requested, rev);
        let opts = ListOptions {
            revision: Some(rev),
            ..Default::default()
        };
        assert_err!(s.list(&p, opts).await, Error::Compacted { .. });
    }
    // Reads at and after r still work, including keys deleted since r.
    assert_eq!(s.get(&k, Some(r)).await.unwrap().0, Some(k3.clone()));
    assert_eq!(s.get(&j, Some(r)).await.unwrap().0, Some(j1.clone()));
    assert_eq!(s.get(&j, Some(j_gone)).await.unwrap().0, None);
    let at_r = s
        .list(
            &p,
            ListOptions {
                revision: Some(r),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at_r.items, vec![j1.clone(), k3.clone()]);
    assert_eq!(at_r.revision, r);
    // Latest values are intact.
    let latest = s.list(&p, ListOptions::default()).await.unwrap();
    assert_eq!(latest.items, vec![k3.clone(), m1.clone()]);
    assert_eq!(s.count(&p).await.unwrap(), 2);

    // A watch that would need revision r-1 fails; one from r on works.
    let mut watch = s.watch(&p, r - 2).await.unwrap();
    match next_item(&mut watch).await {
        Some(Err(Error::Compacted { .. })) => {}
        other => panic!("a watch from a compacted revision must fail with Compacted: {other:?}"),
    }
    let mut watch = s.watch(&p, r - 1).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, &*event.kv), (EventKind::Update, &k3));
    // Its previous value may or may not have survived the compaction.
    if let Some(prev) = &event.prev {
        assert_eq!(**prev, k2);
    }
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kind, event.revision(), &event.kv.key),
        (EventKind::Delete, j_gone, &j)
    );
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, &*event.kv), (EventKind::Create, &m1));

    // Compacting again at the same revision is not an error.
    s.compact(r).await.unwrap();
    assert_eq!(s.get(&k, Some(r)).await.unwrap().0, Some(k3.clone()));

    // Writes go on, and later compactions move the horizon.
    let k4 = s
        .update(&k, b"k4".to_vec(), k3.mod_revision, None)
        .await
        .unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(*event.kv, k4);
    s.compact(m1.mod_revision).await.unwrap();
    assert_err!(s.get(&k, Some(j_gone)).await, Error::Compacted { .. });
    assert_eq!(s.get(&k, Some(m1.mod_revision)).await.unwrap().0, Some(k3));
    assert_eq!(must_get(s.as_ref(), &k).await, k4);
}

pub async fn ttl_expiry(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("ttl");
    let (short, stays) = (format!("{p}short"), format!("{p}stays"));
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch(&p, start).await.unwrap();

    let kept = s.create(&stays, b"forever".to_vec(), None).await.unwrap();
    let expiring = s
        .create(&short, b"brief".to_vec(), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(
        must_get(s.as_ref(), &short).await,
        expiring,
        "readable before it expires"
    );

    eventually("the key with a 1 s TTL is deleted", DEADLINE, || {
        let s = s.clone();
        let short = short.clone();
        async move { s.get(&short, None).await.unwrap().0.is_none() }
    })
    .await;

    assert_eq!(*next_event(&mut watch).await.kv, kept);
    assert_eq!(*next_event(&mut watch).await.kv, expiring);
    let event = next_event(&mut watch).await;
    assert_eq!(
        event.kind,
        EventKind::Delete,
        "expiry is seen as a delete: {event:?}"
    );
    assert_eq!(event.kv.key, short);
    assert_eq!(event.kv.value, b"brief");
    assert!(event.revision() > expiring.mod_revision);
    assert_eq!(
        event.prev.as_ref().map(|kv| &kv.value),
        Some(&b"brief".to_vec())
    );

    // The key without a TTL is untouched, and the expired one can be made again.
    assert_eq!(must_get(s.as_ref(), &stays).await, kept);
    assert_eq!(s.count(&p).await.unwrap(), 1);
    s.create(&short, b"again".to_vec(), None).await.unwrap();
}
