//! Failed writes: each precondition failure is its own `Error` variant (the
//! registry maps them to 409 AlreadyExists, 404 NotFound, 409 Conflict, 413),
//! a conflict hands back the current value, failures change nothing, and
//! compare-and-swap holds under concurrent writers. (Upstream: the
//! apiserver's `GuaranteedUpdate` retry loop over etcd transactions.)

use std::collections::HashSet;
use std::sync::Arc;

use rkube_storage::{Error, Revision, Store, MAX_VALUE_BYTES};
use tokio::sync::Barrier;

use crate::{must_get, prefix, Harness};

pub async fn write_errors_are_distinct(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("errors");
    let key = format!("{p}k");
    let missing = format!("{p}missing");

    let v1 = s.create(&key, b"v1".to_vec(), None).await.unwrap();
    let v2 = s
        .update(&key, b"v2".to_vec(), v1.mod_revision, None)
        .await
        .unwrap();
    let rev = s.current_revision().await.unwrap();

    // Create over an existing key.
    let err = assert_err!(
        s.create(&key, b"x".to_vec(), None).await,
        Error::AlreadyExists { .. }
    );
    assert!(
        matches!(&err, Error::AlreadyExists { key: k } if *k == key),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&key),
        "message names the key: {err}"
    );

    // Update and delete of a key that never existed.
    let err = assert_err!(
        s.update(&missing, b"x".to_vec(), 1, None).await,
        Error::NotFound { .. }
    );
    assert!(
        matches!(&err, Error::NotFound { key: k } if *k == missing),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&missing),
        "message names the key: {err}"
    );
    assert_err!(s.delete(&missing, None).await, Error::NotFound { .. });
    assert_err!(
        s.delete(&missing, Some(v1.mod_revision)).await,
        Error::NotFound { .. }
    );

    // Update with a stale revision: a conflict carrying the current value.
    let err = assert_err!(
        s.update(&key, b"stale".to_vec(), v1.mod_revision, None)
            .await,
        Error::Conflict { .. }
    );
    let Error::Conflict {
        key: k,
        expected,
        current,
    } = &err
    else {
        unreachable!()
    };
    assert_eq!(*k, key);
    assert_eq!(*expected, v1.mod_revision);
    assert_eq!(
        **current, v2,
        "the conflict carries the value the key holds now"
    );
    assert!(
        err.to_string().contains(&key),
        "message names the key: {err}"
    );

    // A revision from the future is just as stale.
    assert_err!(
        s.update(&key, b"x".to_vec(), v2.mod_revision + 100, None)
            .await,
        Error::Conflict { .. }
    );

    // Delete with a stale revision.
    let err = assert_err!(
        s.delete(&key, Some(v1.mod_revision)).await,
        Error::Conflict { .. }
    );
    let Error::Conflict {
        expected, current, ..
    } = &err
    else {
        unreachable!()
    };
    assert_eq!(*expected, v1.mod_revision);
    assert_eq!(**current, v2);

    // None of that changed anything.
    assert_eq!(must_get(s.as_ref(), &key).await, v2);
    assert_eq!(s.get(&missing, None).await.unwrap().0, None);
    assert_eq!(
        s.current_revision().await.unwrap(),
        rev,
        "failed writes are not revisions"
    );

    // A key deleted since: its old revision finds nothing to update.
    s.delete(&key, Some(v2.mod_revision)).await.unwrap();
    assert_err!(
        s.update(&key, b"x".to_vec(), v2.mod_revision, None).await,
        Error::NotFound { .. }
    );
    assert_err!(
        s.delete(&key, Some(v2.mod_revision)).await,
        Error::NotFound { .. }
    );
    // ...and it can be created again.
    s.create(&key, b"v3".to_vec(), None).await.unwrap();
}

pub async fn concurrent_cas_has_one_winner(h: &mut dyn Harness) {
    const WRITERS: usize = 16;
    let s = h.store();
    let key = format!("{}contended", prefix("cas"));
    let start = s.create(&key, b"start".to_vec(), None).await.unwrap();

    // Every writer reads first; only then do all of them write, so they all
    // hold the same revision when they race.
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let (kv, _) = s.get(&key, None).await.unwrap();
            let expected = kv.expect("key exists").mod_revision;
            barrier.wait().await;
            let result = s
                .update(&key, format!("writer-{i}").into_bytes(), expected, None)
                .await;
            (expected, result)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        let (expected, result) = task.await.unwrap();
        assert_eq!(expected, start.mod_revision);
        match result {
            Ok(kv) => winners.push(kv),
            Err(Error::Conflict { current, .. }) => losers.push(*current),
            Err(other) => panic!("a losing writer must get Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    assert_eq!(losers.len(), WRITERS - 1);
    let winner = &winners[0];
    for current in &losers {
        assert_eq!(current, winner, "each loser is shown the winner's value");
    }
    assert_eq!(must_get(s.as_ref(), &key).await, *winner);
}

pub async fn concurrent_counter_is_exact(h: &mut dyn Harness) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 25;
    let s = h.store();
    let key = format!("{}counter", prefix("counter"));
    let start = s.create(&key, b"0".to_vec(), None).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (s, key) = (s.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            increment(s.as_ref(), &key, INCREMENTS).await
        }));
    }
    let mut revisions = HashSet::new();
    let mut conflicts = 0;
    for task in tasks {
        let (revs, lost) = task.await.unwrap();
        conflicts += lost;
        for rev in revs {
            assert!(
                revisions.insert(rev),
                "two successful updates share revision {rev}"
            );
        }
    }
    let total = TASKS * INCREMENTS;
    assert_eq!(revisions.len(), total);
    let end = must_get(s.as_ref(), &key).await;
    assert_eq!(String::from_utf8_lossy(&end.value), total.to_string());
    assert_eq!(end.mod_revision, *revisions.iter().max().unwrap());
    assert_eq!(end.create_revision, start.create_revision);
    // Not an assertion on the backend, just context when reading the log.
    println!("{} conflicts retried", conflicts);
}

/// Add one to the decimal counter at `key`, `times` times, retrying on
/// conflict from the value the conflict carries (as `GuaranteedUpdate`
/// does). Returns the revisions of the successful updates and how many
/// conflicts were retried.
async fn increment(s: &dyn Store, key: &str, times: usize) -> (Vec<Revision>, usize) {
    let mut revisions = Vec::new();
    let mut conflicts = 0;
    let mut current = must_get(s, key).await;
    while revisions.len() < times {
        let n: u64 = std::str::from_utf8(&current.value)
            .unwrap()
            .parse()
            .unwrap();
        match s
            .update(
                key,
                (n + 1).to_string().into_bytes(),
                current.mod_revision,
                None,
            )
            .await
        {
            Ok(kv) => {
                revisions.push(kv.mod_revision);
                current = kv;
            }
            Err(Error::Conflict { current: now, .. }) => {
                assert!(
                    now.mod_revision > current.mod_revision,
                    "a conflict shows a newer value"
                );
                conflicts += 1;
                current = *now;
            }
            Err(other) => panic!("increment {key}: {other}"),
        }
    }
    (revisions, conflicts)
}

pub async fn oversized_value_is_refused(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("too-large");
    let key = format!("{p}big");
    let before = s.current_revision().await.unwrap();

    let err = assert_err!(
        s.create(&key, vec![1; MAX_VALUE_BYTES + 1], None).await,
        Error::TooLarge { .. }
    );
    let Error::TooLarge {
        key: k,
        size,
        limit,
    } = &err
    else {
        unreachable!()
    };
    assert_eq!(*k, key);
    assert_eq!(*size, MAX_VALUE_BYTES + 1);
    assert_eq!(*limit, MAX_VALUE_BYTES);
    assert_eq!(
        s.current_revision().await.unwrap(),
        before,
        "nothing was written"
    );
    assert_eq!(s.get(&key, None).await.unwrap().0, None);
    assert_eq!(s.count(&p).await.unwrap(), 0);

    // Exactly the limit is fine, and reads back whole.
    let value: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    let kv = s
        .create(&key, value.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("a value of exactly MAX_VALUE_BYTES is allowed: {e}"));
    assert!(kv.mod_revision > before);
    let got = must_get(s.as_ref(), &key).await;
    assert!(
        got.value == value,
        "the stored value differs from what was written"
    );

    // An oversized update is refused the same way and leaves the value.
    assert_err!(
        s.update(&key, vec![2; MAX_VALUE_BYTES + 1], kv.mod_revision, None)
            .await,
        Error::TooLarge { .. }
    );
    assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
    let got = must_get(s.as_ref(), &key).await;
    assert_eq!(got.mod_revision, kv.mod_revision);
    assert!(got.value == value);
}
