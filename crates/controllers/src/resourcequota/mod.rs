//! ResourceQuota controller: every quota's `status.hard` and `status.used`.
//!
//! Upstream counterpart: `pkg/controller/resourcequota`. A quota is
//! recalculated when first seen or when its spec.hard changes, when
//! something it counts in its namespace goes away (pods also when they
//! finish, Services when their type changes) — creations are charged by
//! admission, not here — and every five minutes besides, as upstream's
//! full resync. Usage covers pods and their
//! requests/limits of cpu, memory and ephemeral storage (with the
//! Terminating/NotTerminating/BestEffort/NotBestEffort scopes), services
//! with node ports and load balancers, claims and their storage, and
//! object counts. Enforcement is the API server's admission, not this.

pub mod quantity;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::endpoints::index::PodIndex;
use crate::endpoints::Backoff;
use crate::informers::{Informers, Kind};

/// Upstream's `--resource-quota-sync-period`.
const RESYNC: Duration = Duration::from_secs(300);

/// Errors of the ResourceQuota controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating status of resourcequota {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// The objects of `ns` in a cache.
fn in_namespace<K: Kind>(store: &Store<K>, ns: &str) -> Vec<Arc<K>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .collect()
}

/// How many objects of a kind a namespace has.
type Counter = Box<dyn Fn(&str) -> usize + Send + Sync>;

fn counter<K: Kind>(store: Store<K>) -> Counter {
    Box::new(move |ns| {
        store
            .state()
            .iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns))
            .count()
    })
}

struct Ctx {
    client: kube::Client,
    pods: Arc<PodIndex>,
    services: Store<Service>,
    claims: Store<PersistentVolumeClaim>,
    /// `count/<resource>` name -> counter.
    counters: Vec<(&'static str, Counter)>,
    backoff: Backoff,
}

async fn sync(quota: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = quota.namespace().unwrap_or_default();
    let name = quota.name_any();
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let pods = ctx.pods.pods(&ns);
    let services = in_namespace(&ctx.services, &ns);
    let claims = in_namespace(&ctx.claims, &ns);
    // Count only the kinds this quota names.
    let counts: BTreeMap<String, i64> = ctx
        .counters
        .iter()
        .filter(|(key, _)| {
            let plain = key.trim_start_matches("count/");
            hard.contains_key(*key) || hard.contains_key(plain)
        })
        .map(|(key, count)| (key.to_string(), count(&ns) as i64))
        .collect();
    let snapshot = usage::Namespace {
        pods: &pods,
        services: &services,
        claims: &claims,
        counts,
    };
    let want = ResourceQuotaStatus {
        hard: Some(hard.clone()),
        used: Some(usage::used(&quota, &snapshot)),
    };
    let current = quota.status.clone().unwrap_or_default();
    if current == want {
        return Ok(Action::requeue(RESYNC));
    }
    let mut updated = (*quota).clone();
    updated.status = Some(want);
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(Action::requeue(RESYNC)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Status(format!("{ns}/{name}"), e)),
    }
}

/// The quotas of `ns`, to recalculate when something there changes.
fn quotas_of(store: &Store<ResourceQuota>, ns: Option<String>) -> Vec<ObjectRef<ResourceQuota>> {
    let Some(ns) = ns else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(ns.as_str()))
        .map(|q| ObjectRef::from_obj(&**q))
        .collect()
}

/// Quota events worth a recalculation: a quota seen for the first time
/// (startup, creation) or whose spec.hard differs from status.hard. Not a
/// status-only change: admission charges status.used on every create, and
/// recalculating then, from caches that may not show the object just
/// admitted yet, would hand the charge back and let racing creates pass
/// the quota (upstream enqueues quota updates only when spec.hard changes).
fn quota_changes(
    stream: impl futures::Stream<Item = Arc<ResourceQuota>> + Send + 'static,
) -> impl futures::Stream<Item = Arc<ResourceQuota>> + Send + 'static {
    let mut seen = std::collections::HashSet::new();
    stream.filter(move |q| {
        let first = seen.insert(q.metadata.uid.clone().unwrap_or_default());
        let hard = q.spec.as_ref().and_then(|s| s.hard.as_ref());
        let status_hard = q.status.as_ref().and_then(|s| s.hard.as_ref());
        futures::future::ready(first || hard != status_hard)
    })
}

/// Whether a pod event may lower what quotas use: the pod is gone, going
/// or finished (upstream's replenishment). A new or running pod was
/// charged by admission already; recalculating on its events would race
/// admission the same way as above.
fn may_lower_usage(pods: &Store<Pod>, pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
        || pods.get(&ObjectRef::from_obj(pod)).is_none()
}

/// Whether an object event may lower what quotas count: the object is
/// gone from the cache or being deleted.
fn gone_or_going<K: Kind>(store: &Store<K>, obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some() || store.get(&ObjectRef::from_obj(obj)).is_none()
}

/// The last seen type of each Service, so that a NodePort or LoadBalancer
/// turned into a ClusterIP gives its node ports and load balancer back
/// (upstream replenishes on a change of the quota-relevant service type).
#[derive(Default)]
struct ServiceTypes(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl ServiceTypes {
    /// Record `svc`'s type (forget it once the Service is `gone`);
    /// whether it differs from the one seen before.
    fn changed(&self, svc: &Service, gone: bool) -> bool {
        let uid = svc.metadata.uid.clone().unwrap_or_default();
        let ty = svc
            .spec
            .as_ref()
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "ClusterIP".to_string());
        let mut types = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if gone {
            types.remove(&uid);
            return false;
        }
        match types.insert(uid, ty.clone()) {
            Some(before) => before != ty,
            None => false,
        }
    }
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let quotas = informers.store::<ResourceQuota>();
    let pods = informers.store::<Pod>();
    let services = informers.store::<Service>();
    let claims = informers.store::<PersistentVolumeClaim>();
    let counters: Vec<(&'static str, Counter)> = vec![
        ("count/configmaps", counter(informers.store::<ConfigMap>())),
        ("count/secrets", counter(informers.store::<Secret>())),
        (
            "count/replicationcontrollers",
            counter(informers.store::<ReplicationController>()),
        ),
        ("count/resourcequotas", counter(quotas.clone())),
        (
            "count/deployments.apps",
            counter(informers.store::<Deployment>()),
        ),
        (
            "count/replicasets.apps",
            counter(informers.store::<ReplicaSet>()),
        ),
        (
            "count/statefulsets.apps",
            counter(informers.store::<StatefulSet>()),
        ),
        (
            "count/daemonsets.apps",
            counter(informers.store::<DaemonSet>()),
        ),
        ("count/jobs.batch", counter(informers.store::<Job>())),
        (
            "count/cronjobs.batch",
            counter(informers.store::<CronJob>()),
        ),
    ];
    for ready in [
        quotas.wait_until_ready().await,
        pods.wait_until_ready().await,
        services.wait_until_ready().await,
        claims.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    let pod_store = pods.clone();
    let index = PodIndex::new(pods);
    let ctx = Arc::new(Ctx {
        client,
        pods: index.clone(),
        services,
        claims,
        counters,
        backoff: Backoff::default(),
    });
    // Counted objects replenish a quota only when they go (upstream's
    // quota monitor has no add handler); their creation was charged by
    // admission, and recalculating from a cache that lags it would hand
    // the charge back.
    macro_rules! of_ns {
        ($kind:ty) => {{
            let quotas = quotas.clone();
            let objects = informers.store::<$kind>();
            move |o: Arc<$kind>| {
                if gone_or_going(&objects, &*o) {
                    quotas_of(&quotas, ResourceExt::namespace(&*o))
                } else {
                    Vec::new()
                }
            }
        }};
    }
    let service_store = informers.store::<Service>();
    let service_types = ServiceTypes::default();
    let q_services = quotas.clone();
    let q = quotas.clone();
    let quota_events = quota_changes(informers.shared_stream::<ResourceQuota>());
    Controller::for_shared_stream(quota_events, quotas.clone())
        .watches_shared_stream(informers.shared_stream::<Pod>(), move |pod: Arc<Pod>| {
            index.observe(&pod);
            if may_lower_usage(&pod_store, &pod) {
                quotas_of(&q, pod.namespace())
            } else {
                Vec::new()
            }
        })
        .watches_shared_stream(
            informers.shared_stream::<Service>(),
            move |svc: Arc<Service>| {
                let gone = gone_or_going(&service_store, &*svc);
                if service_types.changed(&svc, gone) || gone {
                    quotas_of(&q_services, svc.namespace())
                } else {
                    Vec::new()
                }
            },
        )
        .watches_shared_stream(
            informers.shared_stream::<PersistentVolumeClaim>(),
            of_ns!(PersistentVolumeClaim),
        )
        .watches_shared_stream(informers.shared_stream::<ConfigMap>(), of_ns!(ConfigMap))
        .watches_shared_stream(informers.shared_stream::<Secret>(), of_ns!(Secret))
        .watches_shared_stream(
            informers.shared_stream::<ReplicationController>(),
            of_ns!(ReplicationController),
        )
        .watches_shared_stream(informers.shared_stream::<Deployment>(), of_ns!(Deployment))
        .watches_shared_stream(informers.shared_stream::<ReplicaSet>(), of_ns!(ReplicaSet))
        .watches_shared_stream(
            informers.shared_stream::<StatefulSet>(),
            of_ns!(StatefulSet),
        )
        .watches_shared_stream(informers.shared_stream::<DaemonSet>(), of_ns!(DaemonSet))
        .watches_shared_stream(informers.shared_stream::<Job>(), of_ns!(Job))
        .watches_shared_stream(informers.shared_stream::<CronJob>(), of_ns!(CronJob))
        .run(
            |quota, ctx: Arc<Ctx>| async move {
                let key = format!(
                    "{}/{}",
                    quota.namespace().unwrap_or_default(),
                    quota.name_any()
                );
                let out = sync(quota, ctx.clone()).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |quota, err, ctx| {
                let key = format!(
                    "{}/{}",
                    quota.namespace().unwrap_or_default(),
                    quota.name_any()
                );
                tracing::warn!(quota = %key, error = %err, "resource quota sync failed");
                Action::requeue(ctx.backoff.failed(&key))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
