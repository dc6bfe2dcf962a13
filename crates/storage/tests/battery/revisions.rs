//! Revisions: every write gets a new, larger one; keys remember the revision
//! that created them and the one that last changed them; reads can go back
//! in time but not forward. (Upstream: etcd's MVCC `KeyValue` fields, which
//! the apiserver exposes as `resourceVersion`.)

use rkube_storage::{Error, ListOptions, Revision};

use crate::{must_get, prefix, Harness};

pub async fn write_revisions_strictly_increase(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("revisions");
    let mut last = s.current_revision().await.unwrap();
    let mut seen: Vec<Revision> = Vec::new();
    let mut record = |rev: Revision, what: &str| {
        assert!(rev > last, "{what}: revision {rev} is not after {last}");
        last = rev;
        seen.push(rev);
    };

    // Every kind of write, interleaved over a few keys.
    for round in 0..4 {
        let mut latest = Vec::new();
        for name in ["a", "b", "c"] {
            let key = format!("{p}{name}");
            let kv = s
                .create(&key, format!("{name}{round}").into_bytes(), None)
                .await
                .unwrap();
            record(kv.mod_revision, "create");
            let kv = s
                .update(&key, b"updated".to_vec(), kv.mod_revision, None)
                .await
                .unwrap();
            record(kv.mod_revision, "update");
            latest.push(kv);
        }
        for kv in latest {
            // Conditional and unconditional deletes alike.
            let expected = (round % 2 == 0).then_some(kv.mod_revision);
            let (_, rev) = s.delete(&kv.key, expected).await.unwrap();
            record(rev, "delete");
        }
    }
    assert_eq!(seen.len(), 36);
    // The store's revision is the last write's, not something beyond it.
    assert_eq!(s.current_revision().await.unwrap(), last);
    // A read is not a write.
    s.get(&format!("{p}a"), None).await.unwrap();
    s.list(&p, ListOptions::default()).await.unwrap();
    s.count(&p).await.unwrap();
    assert_eq!(s.current_revision().await.unwrap(), last);
}

pub async fn create_and_mod_revisions(h: &mut dyn Harness) {
    let s = h.store();
    let key = format!("{}pod", prefix("create-mod"));

    let created = s.create(&key, b"v1".to_vec(), None).await.unwrap();
    assert_eq!(created.key, key);
    assert_eq!(created.value, b"v1");
    assert_eq!(
        created.create_revision, created.mod_revision,
        "a create is its own creation"
    );

    let updated = s
        .update(&key, b"v2".to_vec(), created.mod_revision, None)
        .await
        .unwrap();
    assert_eq!(updated.key, key);
    assert_eq!(updated.value, b"v2");
    assert_eq!(
        updated.create_revision, created.create_revision,
        "update keeps create_revision"
    );
    assert!(updated.mod_revision > created.mod_revision);

    let again = s
        .update(&key, b"v3".to_vec(), updated.mod_revision, None)
        .await
        .unwrap();
    assert_eq!(again.create_revision, created.create_revision);
    assert!(again.mod_revision > updated.mod_revision);
    assert_eq!(
        must_get(s.as_ref(), &key).await,
        again,
        "get returns what the update returned"
    );

    let (deleted, delete_rev) = s.delete(&key, Some(again.mod_revision)).await.unwrap();
    assert_eq!(deleted.key, key);
    assert_eq!(deleted.value, b"v3", "delete returns the last value");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert!(delete_rev > again.mod_revision);

    let recreated = s.create(&key, b"v4".to_vec(), None).await.unwrap();
    assert!(
        recreated.create_revision > delete_rev,
        "a recreated key is a new incarnation"
    );
    assert_ne!(recreated.create_revision, created.create_revision);
    assert_eq!(recreated.mod_revision, recreated.create_revision);
    let got = must_get(s.as_ref(), &key).await;
    assert_eq!(got, recreated);

    // A delete without a precondition works as well.
    let (deleted, rev) = s.delete(&key, None).await.unwrap();
    assert_eq!(deleted.value, b"v4");
    assert_eq!(rev, s.current_revision().await.unwrap());
}

pub async fn get_latest_and_past(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("get-past");
    let key = format!("{p}k");
    let other = format!("{p}other");

    let v1 = s.create(&key, b"v1".to_vec(), None).await.unwrap();
    // An unrelated write between two versions of the key.
    let unrelated = s.create(&other, b"o".to_vec(), None).await.unwrap();
    let v2 = s
        .update(&key, b"v2".to_vec(), v1.mod_revision, None)
        .await
        .unwrap();
    let v3 = s
        .update(&key, b"v3".to_vec(), v2.mod_revision, None)
        .await
        .unwrap();
    let (_, deleted_at) = s.delete(&key, None).await.unwrap();
    let after = s
        .update(&other, b"o2".to_vec(), unrelated.mod_revision, None)
        .await
        .unwrap();
    assert!(after.mod_revision > deleted_at);

    let at = |rev: Revision| {
        let s = s.clone();
        let key = key.clone();
        async move { s.get(&key, Some(rev)).await.unwrap().0 }
    };
    assert_eq!(at(v1.mod_revision - 1).await, None, "before creation");
    assert_eq!(at(v1.mod_revision).await.as_ref(), Some(&v1));
    assert_eq!(
        at(unrelated.mod_revision).await.as_ref(),
        Some(&v1),
        "between versions"
    );
    assert_eq!(at(v2.mod_revision).await.as_ref(), Some(&v2));
    assert_eq!(at(v3.mod_revision).await.as_ref(), Some(&v3));
    // Just before its delete, a deleted key is still visible with its last value.
    assert_eq!(at(deleted_at - 1).await.as_ref(), Some(&v3));
    assert_eq!(at(deleted_at).await, None);
    assert_eq!(at(after.mod_revision).await, None);

    // Latest: the key is gone; the read is served at the current revision.
    let (latest, served) = s.get(&key, None).await.unwrap();
    assert_eq!(latest, None);
    assert_eq!(served, after.mod_revision);
    let (latest, served) = s.get(&other, None).await.unwrap();
    assert_eq!(latest.as_ref(), Some(&after));
    assert_eq!(served, after.mod_revision);
    let (missing, _) = s.get(&format!("{p}never"), None).await.unwrap();
    assert_eq!(missing, None);

    // A list at a past revision sees the deleted key too.
    let page = s
        .list(
            &p,
            ListOptions {
                revision: Some(v2.mod_revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.revision, v2.mod_revision);
    assert_eq!(page.items, vec![v2.clone(), unrelated.clone()]);
}

pub async fn get_future_revision_fails(h: &mut dyn Harness) {
    let s = h.store();
    let key = format!("{}k", prefix("future"));
    let kv = s.create(&key, b"v".to_vec(), None).await.unwrap();
    let current = s.current_revision().await.unwrap();
    assert_eq!(current, kv.mod_revision);

    // The current revision itself is readable.
    let (got, _) = s.get(&key, Some(current)).await.unwrap();
    assert_eq!(got.as_ref(), Some(&kv));

    for ahead in [1, 1000] {
        let requested = current + ahead;
        let err = assert_err!(
            s.get(&key, Some(requested)).await,
            Error::FutureRevision { .. }
        );
        let Error::FutureRevision {
            requested: r,
            current: c,
        } = err
        else {
            unreachable!()
        };
        assert_eq!(r, requested);
        assert_eq!(c, current);
        let opts = ListOptions {
            revision: Some(requested),
            ..Default::default()
        };
        assert_err!(
            s.list(&prefix("future"), opts).await,
            Error::FutureRevision { .. }
        );
    }
    // Failed reads leave the store as it was.
    assert_eq!(s.current_revision().await.unwrap(), current);
}
