//! ReplicaSet and ReplicationController controllers: keep the number of
//! active pods an owner selects equal to its spec.replicas, and report
//! how many are ready and available.
//!
//! Upstream counterpart: `pkg/controller/replicaset` and
//! `pkg/controller/replication` (which reuses the former). One generic
//! implementation serves both kinds here ([`workload::Replicated`]).
//!
//! A sync reads the owner and its pods from the shared informers' caches
//! (the pods through [`index::PodIndex`], never a scan of every pod),
//! decides in [`plan`] (pure), then acts: adopt/release pods by patching
//! their ownerReferences, create missing pods in slow-start batches,
//! delete excess ones worst-first, and write the status. Expectations
//! keep a sync from acting again before the cache shows its last writes.

pub mod correlator;
pub mod events;
pub mod index;
pub mod plan;
pub mod workload;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::informers::Informers;
use crate::pods;
use index::PodIndex;
use plan::{Failure, Snapshot};
use workload::Replicated;

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating pods for {0}: {1}")]
    Create(String, #[source] kube::Error),
    #[error("deleting pod {0}: {1}")]
    Delete(String, #[source] kube::Error),
    #[error("patching ownerReferences of pod {0}: {1}")]
    Claim(String, #[source] kube::Error),
    #[error("reading {0} before adopting pods: {1}")]
    Recheck(String, #[source] kube::Error),
    #[error("writing status of {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// Run the ReplicaSet controller until its streams end.
pub async fn run_replicasets(client: kube::Client, informers: Arc<Informers>) {
    run::<ReplicaSet>(client, informers).await
}

/// Run the ReplicationController controller until its streams end.
pub async fn run_replication_controllers(client: kube::Client, informers: Arc<Informers>) {
    run::<ReplicationController>(client, informers).await
}

/// Shared by every sync of one controller.
struct Ctx<K: Replicated> {
    client: kube::Client,
    owners: Store<K>,
    replicasets: Store<ReplicaSet>,
    index: Arc<PodIndex>,
    recorder: events::Recorder,
}

async fn run<K: Replicated>(client: kube::Client, informers: Arc<Informers>) {
    let owners = informers.store::<K>();
    let pod_store = informers.store::<Pod>();
    let index = Arc::new(PodIndex::new(pod_store.clone()));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        owners: owners.clone(),
        replicasets: informers.store::<ReplicaSet>(),
        index: index.clone(),
        recorder: events::Recorder::new(client, K::REPORTER),
    });
    let _ = pod_store.wait_until_ready().await;
    let _ = owners.wait_until_ready().await;
    let mapper_owners = owners.clone();
    // Owners that left the cache were deleted: drop their expectations
    // (the controller never syncs a deleted owner to do it).
    let (gone_store, gone_index) = (owners.clone(), index.clone());
    let owner_changes = informers.shared_stream::<K>().inspect(move |o| {
        if gone_store.get(&ObjectRef::from_obj(&**o)).is_none() {
            gone_index.forget(o.meta().uid.as_deref().unwrap_or(""));
        }
    });
    Controller::for_shared_stream(owner_changes, owners)
        .watches_shared_stream(informers.shared_stream::<Pod>(), move |pod: Arc<Pod>| {
            owners_to_sync(&index, &mapper_owners, &pod)
        })
        .run(
            |obj, ctx| async move { sync(obj, ctx).await },
            |obj, err, _| {
                tracing::warn!(kind = K::KIND, name = %obj.name_any(), error = %err, "sync failed");
                Action::requeue(Duration::from_secs(1))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// The owners a changed pod concerns: its controller (and former one), or
/// for an orphan every owner in its namespace that selects it.
fn owners_to_sync<K: Replicated>(
    index: &PodIndex,
    owners: &Store<K>,
    pod: &Pod,
) -> Vec<ObjectRef<K>> {
    let touched = index.observe(pod);
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<ObjectRef<K>> = Vec::new();
    for (uid, name) in touched.owners {
        let found = if name.is_empty() {
            owners.find(|o| o.meta().uid.as_deref() == Some(uid.as_str()))
        } else {
            owners.get(&ObjectRef::new(&name).within(&ns))
        };
        if let Some(o) = found.filter(|o| o.meta().uid.as_deref() == Some(uid.as_str())) {
            out.push(ObjectRef::from_obj(&*o));
        }
    }
    if touched.orphan && pod.metadata.deletion_timestamp.is_none() {
        out.extend(
            owners
                .state_filter(|o| {
                    o.meta().namespace.as_deref() == Some(ns.as_str())
                        && o.selects(pod.metadata.labels.as_ref())
                })
                .iter()
                .map(|o| ObjectRef::from_obj(&**o)),
        );
    }
    out
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn sync<K: Replicated>(obj: Arc<K>, ctx: Arc<Ctx<K>>) -> Result<Action, Error> {
    let meta = obj.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    // A newer copy may be in the cache already (the trigger carried an old one).
    let obj = ctx.owners.get(&ObjectRef::from_obj(&*obj)).unwrap_or(obj);
    let owned = ctx.index.owned(&uid);
    let orphans = ctx.index.orphans(&ns);
    // The siblings' pods only rank pods for deletion, and there can be
    // none unless the owner has more candidates than it wants: skip
    // gathering them (a second pass over every pod) on the common sync.
    let related_owned = if owned.len() + orphans.len() > obj.desired().max(0) as usize {
        related_pods(&ctx, &*obj)
    } else {
        Vec::new()
    };
    let now = Timestamp::now();
    let selects = |l: Option<&std::collections::BTreeMap<String, String>>| obj.selects(l);
    let snap = Snapshot {
        uid: &uid,
        deleting: obj.meta().deletion_timestamp.is_some(),
        desired: obj.desired(),
        min_ready_seconds: obj.min_ready_seconds(),
        selects: &selects,
        template_labels: obj
            .template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref()),
        owned: owned.iter().map(|p| &**p).collect(),
        orphans: orphans.iter().map(|p| &**p).collect(),
        related: related_owned.iter().map(|p| &**p).collect(),
        expectations_met: ctx.index.satisfied(&uid),
        now,
    };
    let decided = plan::plan(&snap);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut failure = None;
    if !decided.adopt.is_empty() {
        // Upstream re-reads the owner from the API before adopting: a
        // cached copy might not show that it is being deleted.
        let fresh = Api::<K>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|e| Error::Recheck(name.clone(), e))?;
        let alive = fresh.is_some_and(|f| {
            f.meta().uid.as_deref() == Some(uid.as_str()) && f.meta().deletion_timestamp.is_none()
        });
        if alive {
            for pod in &decided.adopt {
                adopt::<K>(&pods_api, &orphans, pod, obj.meta()).await?;
            }
        }
    }
    for pod in &decided.release {
        release(&pods_api, &owned, pod, &uid).await?;
    }
    if decided.create > 0 {
        if let Err(e) = create_pods(&ctx, &*obj, &pods_api, decided.create).await {
            failure = Some(Failure::Create(failure_message(&e)));
        }
    }
    if !decided.delete.is_empty() {
        if let Err(e) = delete_pods(&ctx, &*obj, &pods_api, &decided.delete).await {
            failure = Some(Failure::Delete(failure_message(&e)));
        }
    }
    // Status over the claimed pods, read back from the cache so adoptions
    // and releases count.
    let claimed_names: HashSet<&str> = decided.claimed.iter().map(String::as_str).collect();
    let claimed: Vec<&Pod> = snap
        .owned
        .iter()
        .chain(snap.orphans.iter())
        .copied()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| claimed_names.contains(n))
        })
        .collect();
    let previous = obj.status();
    let status = plan::status(
        &snap,
        &claimed,
        obj.meta().generation.unwrap_or(0),
        &previous,
        failure.as_ref(),
        &rfc3339(now),
    );
    if status != previous {
        Api::<K>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status.to_json() })),
            )
            .await
            .map_err(|e| Error::Status(name.clone(), e))?;
    }
    if failure.is_some() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    // Pods that are ready but not yet available become so on their own:
    // look again then (upstream requeues after minReadySeconds).
    let wait = claimed
        .iter()
        .filter_map(|p| pods::until_available(p, obj.min_ready_seconds(), now))
        .min();
    Ok(match wait {
        Some(d) => Action::requeue(d.unsigned_abs()),
        None => Action::await_change(),
    })
}

/// The ReplicaFailure message: the API server's own words when it
/// refused (upstream puts the error's text there, e.g. `pods "x" is
/// forbidden: exceeded quota: ...`).
fn failure_message(e: &Error) -> String {
    match e {
        Error::Create(_, kube::Error::Api(s)) | Error::Delete(_, kube::Error::Api(s)) => {
            s.message.clone()
        }
        other => other.to_string(),
    }
}

/// Active pods of the other ReplicaSets of the same Deployment, which
/// count when ranking which pods share a node (upstream
/// `getIndirectlyRelatedPods`).
fn related_pods<K: Replicated>(ctx: &Ctx<K>, obj: &K) -> Vec<Arc<Pod>> {
    let Some(dep) = pods::controller_of(obj.meta()) else {
        return ctx.index.owned(obj.meta().uid.as_deref().unwrap_or(""));
    };
    let ns = obj.meta().namespace.as_deref();
    ctx.replicasets
        .state_filter(|rs| {
            rs.metadata.namespace.as_deref() == ns
                && pods::controller_of(&rs.metadata).is_some_and(|r| r.uid == dep.uid)
        })
        .iter()
        .flat_map(|rs| ctx.index.owned(rs.metadata.uid.as_deref().unwrap_or("")))
        .filter(|p| pods::is_active(p))
        .collect()
}

fn pod_named<'a>(pods: &'a [Arc<Pod>], name: &str) -> Option<&'a Arc<Pod>> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

/// Make `owner` the pod's controller; resourceVersion guards the patch
/// against a concurrent change (a 409 retries the sync).
async fn adopt<K: Replicated>(
    api: &Api<Pod>,
    orphans: &[Arc<Pod>],
    pod: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(), Error> {
    let Some(p) = pod_named(orphans, pod) else {
        return Ok(());
    };
    let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
    refs.push(pods::controller_ref(K::API_VERSION, K::KIND, owner));
    patch_refs(api, p, refs).await
}

/// Drop `owner_uid` from the pod's ownerReferences.
async fn release(
    api: &Api<Pod>,
    owned: &[Arc<Pod>],
    pod: &str,
    owner_uid: &str,
) -> Result<(), Error> {
    let Some(p) = pod_named(owned, pod) else {
        return Ok(());
    };
    let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    patch_refs(api, p, refs).await
}

async fn patch_refs(
    api: &Api<Pod>,
    pod: &Pod,
    refs: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<(), Error> {
    let name = pod.name_any();
    let body = json!({
        "metadata": {
            "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
            "resourceVersion": pod.metadata.resource_version,
        }
    });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(_) => Ok(()),
        // Gone: nothing to claim.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Claim(name, e)),
    }
}

fn event<K: Replicated>(ctx: &Ctx<K>, obj: &K, warning: bool, reason: &str, note: String) {
    ctx.recorder
        .publish(&obj.object_ref(&()), warning, reason, note);
}

/// Create `n` pods in slow-start batches; stop at the first batch with a
/// failure. Creations that were never attempted or failed lower the
/// expectations, since no watch event will ever report them.
async fn create_pods<K: Replicated>(
    ctx: &Ctx<K>,
    obj: &K,
    api: &Api<Pod>,
    n: usize,
) -> Result<(), Error> {
    let meta = obj.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let ns = meta.namespace.clone().unwrap_or_default();
    let template = obj.template().cloned().unwrap_or_default();
    let owner = pods::controller_ref(K::API_VERSION, K::KIND, meta);
    ctx.index.expect_creations(&uid, n);
    let mut left = n;
    for size in plan::batches(n) {
        let pod = pods::pod_from_template(&template, &ns, &name, owner.clone());
        let pp = PostParams::default();
        let results = futures::future::join_all((0..size).map(|_| api.create(&pp, &pod))).await;
        left -= size;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(created) => {
                    event(
                        ctx,
                        obj,
                        false,
                        "SuccessfulCreate",
                        format!("Created pod: {}", created.name_any()),
                    );
                }
                Err(e) => {
                    ctx.index.creation_observed(&uid);
                    // A terminating namespace refuses new pods; that is
                    // expected and no failure of this owner.
                    let terminating = matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("terminat"));
                    if !terminating {
                        event(
                            ctx,
                            obj,
                            true,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            for _ in 0..left {
                ctx.index.creation_observed(&uid);
            }
            return Err(Error::Create(name, e));
        }
    }
    Ok(())
}

async fn delete_pods<K: Replicated>(
    ctx: &Ctx<K>,
    obj: &K,
    api: &Api<Pod>,
    names: &[String],
) -> Result<(), Error> {
    let uid = obj.meta().uid.clone().unwrap_or_default();
    ctx.index.expect_deletions(&uid, names);
    let dp = DeleteParams::default();
    let results = futures::future::join_all(names.iter().map(|n| api.delete(n, &dp))).await;
    let mut first_err = None;
    for (n, r) in names.iter().zip(results) {
        match r {
            Ok(_) => {
                event(
                    ctx,
                    obj,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {n}"),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 => ctx.index.deletion_observed(&uid, n),
            Err(e) => {
                ctx.index.deletion_observed(&uid, n);
                event(
                    ctx,
                    obj,
                    true,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                );
                first_err.get_or_insert(Error::Delete(n.clone(), e));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
