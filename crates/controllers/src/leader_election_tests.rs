use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig::new("kube-controller-manager", identity)
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn held(by: &str, renewed: i64, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(by.into()),
        lease_duration_seconds: Some(15),
        acquire_time: Some(MicroTime(at(0))),
        renew_time: Some(MicroTime(at(renewed))),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

#[test]
fn no_lease_is_created_with_us_as_holder() {
    let Decision::Create(spec) = decide(None, &cfg("a"), at(5)) else {
        panic!("expected create")
    };
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(5))));
    assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
}

#[test]
fn holder_renews_keeping_acquire_time_and_transitions() {
    let Decision::Update(spec) = decide(Some(&held("a", 2, 3)), &cfg("a"), at(4)) else {
        panic!("expected renewal")
    };
    assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
    assert_eq!(spec.renew_time, Some(MicroTime(at(4))));
    assert_eq!(spec.lease_transitions, Some(3));
}

#[test]
fn valid_lease_of_another_holder_is_respected() {
    assert_eq!(
        decide(Some(&held("b", 2, 0)), &cfg("a"), at(16)),
        Decision::Wait { holder: "b".into() }
    );
}

#[test]
fn expired_lease_is_taken_over_with_a_transition() {
    let Decision::Update(spec) = decide(Some(&held("b", 2, 1)), &cfg("a"), at(17)) else {
        panic!("expected takeover")
    };
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(2));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(17))));
}

/// A Lease API in memory with resourceVersion checks; `fail` makes every
/// call error as if the API server were unreachable.
#[derive(Default)]
struct FakeStore {
    lease: Mutex<Option<Lease>>,
    fail: AtomicBool,
}

fn unreachable_error() -> Error {
    Error::Get(
        "kube-controller-manager".into(),
        kube::Error::LinesCodecMaxLineLengthExceeded,
    )
}

#[async_trait]
impl LeaseStore for FakeStore {
    async fn get(&self) -> Result<Option<Lease>, Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(unreachable_error());
        }
        Ok(self.lease.lock().unwrap().clone())
    }
    async fn create(&self, lease: &Lease) -> Result<bool, Error> {
        let mut cur = self.lease.lock().unwrap();
        if cur.is_some() {
            return Ok(false);
        }
        let mut l = lease.clone();
        l.metadata.resource_version = Some("1".into());
        *cur = Some(l);
        Ok(true)
    }
    async fn replace(&self, lease: &Lease) -> Result<bool, Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(unreachable_error());
        }
        let mut cur = self.lease.lock().unwrap();
        let current_rv = cur
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current_rv != lease.metadata.resource_version {
            return Ok(false);
        }
        let next: u64 = current_rv.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
        let mut l = lease.clone();
        l.metadata.resource_version = Some(next.to_string());
        *cur = Some(l);
        Ok(true)
    }
}

#[tokio::test]
async fn stale_write_loses_the_race() {
    let store = FakeStore::default();
    assert!(try_acquire_or_renew(&store, &cfg("a")).await.unwrap());
    let stale = store.get().await.unwrap().unwrap();
    assert!(try_acquire_or_renew(&store, &cfg("a")).await.unwrap());
    assert!(
        !store.replace(&stale).await.unwrap(),
        "stale rv must conflict"
    );
    // A second candidate cannot take a freshly renewed lease.
    assert!(!try_acquire_or_renew(&store, &cfg("b")).await.unwrap());
}

#[tokio::test]
async fn work_runs_only_while_leading() {
    let store = FakeStore::default();
    let out = run_leading(&store, &cfg("a"), async { 42 }).await.unwrap();
    assert_eq!(out, 42);
    let holder = store.get().await.unwrap().unwrap().spec.unwrap();
    assert_eq!(holder.holder_identity.as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn leadership_is_given_up_when_renewal_fails_for_the_lease_duration() {
    let store = FakeStore::default();
    let cfg = cfg("a");
    let started = tokio::time::Instant::now();
    let result = run_leading(&store, &cfg, async {
        store.fail.store(true, Ordering::SeqCst);
        futures::future::pending::<()>().await
    })
    .await;
    assert!(matches!(result, Err(Error::Lost(..))), "{result:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= cfg.lease_duration && elapsed < cfg.lease_duration + cfg.retry_period * 2,
        "gave up after {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn leadership_ends_at_once_when_another_candidate_took_the_lease() {
    let store = FakeStore::default();
    let cfg = cfg("a");
    let result = run_leading(&store, &cfg, async {
        // Another candidate overwrites the lease (as after a partition).
        let mut lease = store.get().await.unwrap().unwrap();
        let mut theirs = held("b", 0, 1);
        theirs.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(theirs);
        assert!(store.replace(&lease).await.unwrap());
        futures::future::pending::<()>().await
    })
    .await;
    match result {
        Err(Error::Taken(_, holder)) => assert_eq!(holder, "b"),
        other => panic!("expected Taken, got {other:?}"),
    }
}
