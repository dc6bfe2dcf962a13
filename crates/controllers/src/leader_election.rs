//! Lease-based leader election, shared by the controller manager and the
//! scheduler.
//!
//! Upstream counterpart: client-go `tools/leaderelection` with the
//! `LeaseLock` resource lock. A candidate holds a
//! `coordination.k8s.io/v1` Lease by writing its identity and renewing
//! `renewTime` every retry period; others take over only once
//! `renewTime + leaseDurationSeconds` has passed. Writes carry the Lease's
//! resourceVersion, so two candidates racing for an expired lease cannot
//! both win (the loser gets 409 Conflict). The decision is a pure function
//! ([`decide`]); the Lease API sits behind [`LeaseStore`].

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading lease {0}: {1}")]
    Get(String, #[source] kube::Error),
    #[error("writing lease {0}: {1}")]
    Write(String, #[source] kube::Error),
    #[error("leadership of lease {0} lost: not renewed for {1:?}")]
    Lost(String, Duration),
    #[error("leadership of lease {0} lost: now held by {1}")]
    Taken(String, String),
}

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (upstream: hostname plus a unique suffix).
    pub identity: String,
    /// How long a lease stays valid without renewal (upstream default 15 s).
    pub lease_duration: Duration,
    /// How often the holder renews and candidates retry (upstream 2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Upstream's defaults for `name` in `kube-system`.
    pub fn new(name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The Lease API, narrowed to what election needs.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    async fn get(&self) -> Result<Option<Lease>, Error>;
    /// Create; `Ok(false)` when someone else created it first.
    async fn create(&self, lease: &Lease) -> Result<bool, Error>;
    /// Replace with the resourceVersion in `lease`; `Ok(false)` on conflict.
    async fn replace(&self, lease: &Lease) -> Result<bool, Error>;
}

/// [`LeaseStore`] over the API server.
pub struct KubeLeaseStore {
    api: Api<Lease>,
    name: String,
}

impl KubeLeaseStore {
    pub fn new(client: kube::Client, cfg: &LeaseConfig) -> KubeLeaseStore {
        KubeLeaseStore {
            api: Api::namespaced(client, &cfg.namespace),
            name: cfg.name.clone(),
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[async_trait]
impl LeaseStore for KubeLeaseStore {
    async fn get(&self) -> Result<Option<Lease>, Error> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|e| Error::Get(self.name.clone(), e))
    }

    async fn create(&self, lease: &Lease) -> Result<bool, Error> {
        match self.api.create(&PostParams::default(), lease).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(Error::Write(self.name.clone(), e)),
        }
    }

    async fn replace(&self, lease: &Lease) -> Result<bool, Error> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(Error::Write(self.name.clone(), e)),
        }
    }
}

/// What a candidate should do with the lease it observed.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// No lease yet: create this one.
    Create(LeaseSpec),
    /// Write this spec over the observed lease (renewal or takeover).
    Update(LeaseSpec),
    /// Someone else holds a valid lease.
    Wait { holder: String },
}

/// Decide, purely, what `identity` does about `observed` at `now`.
pub fn decide(observed: Option<&LeaseSpec>, cfg: &LeaseConfig, now: Timestamp) -> Decision {
    let duration_secs = cfg.lease_duration.as_secs().max(1) as i32;
    let fresh = |acquire: MicroTime, transitions: i32| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(duration_secs),
        acquire_time: Some(acquire),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(spec) = observed else {
        return Decision::Create(fresh(MicroTime(now), 0));
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    if holder == cfg.identity {
        let acquired = spec.acquire_time.clone().unwrap_or(MicroTime(now));
        return Decision::Update(fresh(acquired, transitions));
    }
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renew), Some(secs)) => renew.0 + SignedDuration::from_secs(secs.into()) <= now,
        // A lease nobody renews (or an empty holder) is free to take.
        _ => true,
    };
    if holder.is_empty() || expired {
        Decision::Update(fresh(MicroTime(now), transitions + 1))
    } else {
        Decision::Wait { holder }
    }
}

/// What one acquire-or-renew attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// We hold the lease now.
    Held,
    /// Our write lost a race; the next attempt reads afresh.
    Conflict,
    /// Someone else holds a valid lease.
    HeldBy(String),
}

/// One acquire-or-renew attempt; true when we hold the lease afterwards.
pub async fn try_acquire_or_renew(
    store: &dyn LeaseStore,
    cfg: &LeaseConfig,
) -> Result<bool, Error> {
    Ok(attempt(store, cfg).await? == Attempt::Held)
}

/// One acquire-or-renew attempt.
pub async fn attempt(store: &dyn LeaseStore, cfg: &LeaseConfig) -> Result<Attempt, Error> {
    let current = store.get().await?;
    let decision = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        cfg,
        Timestamp::now(),
    );
    match decision {
        Decision::Create(spec) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            Ok(won(store.create(&lease).await?))
        }
        Decision::Update(spec) => {
            let mut lease = current.unwrap_or_default();
            lease.spec = Some(spec);
            Ok(won(store.replace(&lease).await?))
        }
        Decision::Wait { holder } => Ok(Attempt::HeldBy(holder)),
    }
}

fn won(written: bool) -> Attempt {
    if written {
        Attempt::Held
    } else {
        Attempt::Conflict
    }
}

/// Wait until this candidate holds the lease, then run `work` while
/// renewing it. Returns `work`'s own result if it ends first, or
/// [`Error::Lost`] (with `work` dropped, i.e. cancelled) once renewal has
/// failed for a whole lease duration, or [`Error::Taken`] at once when
/// another candidate holds the lease — upstream's controller manager exits
/// at that point so that two leaders never act at once.
pub async fn run_leading<F, T>(
    store: &dyn LeaseStore,
    cfg: &LeaseConfig,
    work: F,
) -> Result<T, Error>
where
    F: Future<Output = T>,
{
    loop {
        match try_acquire_or_renew(store, cfg).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
    let renew = async {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(cfg.retry_period).await;
            match attempt(store, cfg).await {
                Ok(Attempt::Held) => last_renewed = tokio::time::Instant::now(),
                Ok(Attempt::Conflict) => {
                    tracing::warn!(lease = %cfg.name, "lease renewal conflicted")
                }
                // Another candidate took over (we were cut off past the
                // lease duration): stop at once, two leaders must not act.
                Ok(Attempt::HeldBy(holder)) => return Error::Taken(cfg.name.clone(), holder),
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
            if last_renewed.elapsed() >= cfg.lease_duration {
                return Error::Lost(cfg.name.clone(), cfg.lease_duration);
            }
        }
    };
    tokio::select! {
        out = work => Ok(out),
        lost = renew => Err(lost),
    }
}

#[cfg(test)]
#[path = "leader_election_tests.rs"]
mod tests;
