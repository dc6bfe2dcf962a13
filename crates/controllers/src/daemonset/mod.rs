//! DaemonSet controller: one pod of the set on every node that should run
//! it, replaced on template changes by a rolling update (or on deletion,
//! with OnDelete), with the template history kept in ControllerRevisions.
//!
//! Upstream counterpart: `pkg/controller/daemon`. The sync reads the
//! shared caches, claims pods by selector, records the template's
//! revision, lets [`plan::reconcile`] decide pod creates and deletes and
//! [`plan::status`] the status. Pods are pinned to their node by node
//! affinity; the scheduler binds them.

pub(crate) mod common;
pub mod eligibility;
pub(crate) mod history;
pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::informers::Informers;
use crate::replicaset::index::PodIndex;
use common::{Backoff, Expectations};

const FAILED_BACKOFF_MIN: Duration = Duration::from_secs(1);
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// The component name upstream's events carry.
const COMPONENT: &str = "daemonset-controller";

/// Errors of the DaemonSet controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating pod for daemon set {0} on node {1}: {2}")]
    CreatePod(String, String, #[source] kube::Error),
    #[error("deleting pod {0}: {1}")]
    DeletePod(String, #[source] kube::Error),
    #[error("writing controller revision {0}: {1}")]
    Revision(String, #[source] kube::Error),
    #[error("controller revision {0} exists with another template (hash collision)")]
    HashCollision(String),
    #[error("updating status of daemon set {0}: {1}")]
    Status(String, #[source] kube::Error),
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    index: Arc<PodIndex>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    backoff: Backoff,
    /// Per DaemonSet and node: until when a failed pod is left, and the
    /// last delay.
    failed_backoff: Mutex<HashMap<String, (Instant, Duration)>>,
    recorder: Recorder,
}

/// Run until the shared informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let sets = informers.store::<DaemonSet>();
    let pods = informers.store::<Pod>();
    let nodes = informers.store::<Node>();
    let revisions = informers.store::<ControllerRevision>();
    let ready = futures::future::join4(
        sets.wait_until_ready(),
        pods.wait_until_ready(),
        nodes.wait_until_ready(),
        revisions.wait_until_ready(),
    );
    let (a, b, c, d) = ready.await;
    if a.is_err() || b.is_err() || c.is_err() || d.is_err() {
        return;
    }
    let ctx = Arc::new(Ctx {
        index: common::pod_index(pods.clone()),
        pods,
        nodes,
        revisions,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
        failed_backoff: Mutex::new(HashMap::new()),
        recorder: common::recorder(&client, COMPONENT),
        client,
    });
    let node_trigger = node_changes(sets.clone(), ctx.nodes.clone());
    Controller::for_shared_stream(informers.shared_stream::<DaemonSet>(), sets.clone())
        .watches_shared_stream(
            informers.shared_stream::<Pod>(),
            common::pod_owners(sets.clone(), ctx.index.clone(), |d: &DaemonSet| {
                d.spec.as_ref().map(|s| &s.selector)
            }),
        )
        .watches_shared_stream(informers.shared_stream::<Node>(), node_trigger)
        .run(
            |ds, ctx| async move {
                let key = key(&ds);
                let out = sync(&ds, &ctx).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |ds, err, ctx| {
                tracing::warn!(daemonset = %key(&ds), error = %err, "daemon set sync failed");
                Action::requeue(ctx.backoff.failed(&key(&ds)))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn key(ds: &DaemonSet) -> String {
    format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any())
}

/// A node change concerns every DaemonSet, but only when what decides
/// placement changed (labels, taints, cordon) or the node came or went —
/// not on every status heartbeat (upstream `shouldIgnoreNodeUpdate`).
fn node_changes(
    sets: Store<DaemonSet>,
    nodes: Store<Node>,
) -> impl Fn(Arc<Node>) -> Vec<ObjectRef<DaemonSet>> + Send + Sync + 'static {
    let seen: Mutex<HashMap<String, u32>> = Mutex::new(HashMap::new());
    move |node: Arc<Node>| {
        let name = node.name_any();
        let present = nodes.get(&ObjectRef::new(&name)).is_some();
        let digest = present.then(|| {
            let spec = node.spec.as_ref();
            let view = json!([
                node.metadata.labels,
                spec.and_then(|s| s.taints.clone()),
                spec.and_then(|s| s.unschedulable),
            ]);
            common::fnv32a(view.to_string().as_bytes())
        });
        let mut seen = seen.lock().expect("node digest lock");
        let changed = match digest {
            Some(d) => seen.insert(name, d) != Some(d),
            None => seen.remove(&name).is_some(),
        };
        if !changed {
            return Vec::new();
        }
        sets.state()
            .iter()
            .map(|d| ObjectRef::from_obj(&**d))
            .collect()
    }
}

async fn sync(ds: &DaemonSet, ctx: &Ctx) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = key(ds);
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owner_ref = common::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    let candidates = common::candidate_pods(&ctx.index, &ds.metadata);
    let claim = common::claim(&ds.metadata, Some(&spec.selector), candidates);
    let owned = common::apply_claim(&pods_api, &owner_ref, claim).await;
    let settled = ctx.expectations.satisfied(&key, &owned);

    let hash = record_history(ds, ctx, &owned).await?;

    let template = spec.template.spec.clone().unwrap_or_default();
    let nodes: BTreeMap<String, eligibility::Fit> = ctx
        .nodes
        .state()
        .iter()
        .map(|n| (n.name_any(), eligibility::node_should_run(n, &template)))
        .collect();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in &owned {
        let target = pod
            .spec
            .as_ref()
            .and_then(eligibility::target_node)
            .unwrap_or_default();
        by_node.entry(target).or_default().push(pod.clone());
    }
    let desired = nodes.values().filter(|f| f.should_run).count() as i32;
    let snap = plan::Snapshot {
        nodes,
        pods: by_node,
        hash: hash.clone(),
        strategy: strategy(ds, desired),
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        generation: ds.metadata.generation,
        now: jiff::Timestamp::now(),
    };
    let mut retry_after = None;
    if settled && ds.metadata.deletion_timestamp.is_none() {
        let mut todo = plan::reconcile(&snap);
        retry_after = hold_failed(ds, ctx, &mut todo).await;
        apply(ds, ctx, &pods_api, &owner_ref, &hash, &todo).await?;
    }
    let status = plan::status(&snap, ds.status.as_ref());
    if ds.status.as_ref() != Some(&status) {
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map_err(|e| Error::Status(key.clone(), e))?;
    }
    Ok(match retry_after {
        Some(after) => Action::requeue(after),
        None => requeue_for_availability(&snap),
    })
}

/// Failed daemon pods are replaced with a backoff per node, 1 s doubling
/// to 15 min, so a pod that fails at once does not spin (upstream's
/// `failedPodsBackoff`). Pods still in their backoff stay for now; the
/// time to come back is returned.
async fn hold_failed(ds: &DaemonSet, ctx: &Ctx, todo: &mut plan::Plan) -> Option<Duration> {
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let now = Instant::now();
    let mut wait: Option<Duration> = None;
    let mut held = Vec::new();
    for (node, pod) in std::mem::take(&mut todo.failed) {
        let key = format!("{uid}/{node}");
        let in_backoff = {
            let mut backoff = ctx.failed_backoff.lock().expect("failed pod backoff lock");
            let entry = backoff.entry(key).or_insert((now, Duration::ZERO));
            if entry.0 > now {
                Some(entry.0 - now)
            } else {
                let next = (entry.1 * 2).clamp(FAILED_BACKOFF_MIN, FAILED_BACKOFF_MAX);
                *entry = (now + next, next);
                None
            }
        };
        match in_backoff {
            Some(left) => {
                held.push(pod);
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            None => {
                let msg = format!(
                    "Found failed daemon pod {}/{pod} on node {node}, will try to kill it",
                    ds.namespace().unwrap_or_default()
                );
                common::event(&ctx.recorder, ds, true, "FailedDaemonPod", msg).await;
            }
        }
    }
    todo.delete.retain(|p| !held.contains(p));
    wait
}

/// With minReadySeconds, a ready pod becomes available later without any
/// event: come back then.
fn requeue_for_availability(snap: &plan::Snapshot) -> Action {
    if snap.min_ready_seconds <= 0 {
        return Action::await_change();
    }
    let waiting = snap.pods.values().flatten().any(|p| {
        common::is_pod_ready(p) && !common::is_pod_available(p, snap.min_ready_seconds, snap.now)
    });
    if waiting {
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::await_change()
    }
}

fn strategy(ds: &DaemonSet, desired: i32) -> plan::Strategy {
    let s = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if s.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return plan::Strategy::OnDelete;
    }
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    plan::Strategy::RollingUpdate {
        max_unavailable: plan::scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired, 1),
        max_surge: plan::scaled(ru.and_then(|r| r.max_surge.as_ref()), desired, 0),
    }
}

/// Make the current template's ControllerRevision current, drop old ones
/// beyond the history limit, and return the template's hash.
async fn record_history(ds: &DaemonSet, ctx: &Ctx, owned: &[Arc<Pod>]) -> Result<String, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let spec = ds.spec.as_ref().expect("checked by the caller");
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let revisions = history::owned_revisions(ctx.revisions.state(), &ns, &uid);
    let live: HashSet<String> = owned
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get(history::HASH_LABEL)
                .cloned()
        })
        .collect();
    let plan = history::plan(
        &ds.name_any(),
        &common::controller_ref("apps/v1", "DaemonSet", &ds.metadata),
        &spec.template,
        ds.status.as_ref().and_then(|s| s.collision_count),
        &revisions,
        spec.revision_history_limit.unwrap_or(10),
        &live,
    );
    if let Err(e) = write_history(&ctx.client, &ns, &plan).await {
        if matches!(e, Error::HashCollision(_)) {
            let count = ds
                .status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0)
                + 1;
            bump_collision_count::<DaemonSet>(&ctx.client, &ns, &ds.name_any(), count).await?;
        }
        return Err(e);
    }
    Ok(plan.hash)
}

/// Record one more hash collision in the owner's status, so the next
/// sync hashes its template differently.
pub(crate) async fn bump_collision_count<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    count: i32,
) -> Result<(), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"collisionCount": count}})),
        )
        .await
        .map_err(|e| Error::Status(format!("{ns}/{name}"), e))?;
    Ok(())
}

/// Carry out a history plan (shared with the StatefulSet controller).
pub(crate) async fn write_history(
    client: &kube::Client,
    ns: &str,
    plan: &history::Plan,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    if let Some(rev) = &plan.create {
        match api.create(&PostParams::default(), rev).await {
            Ok(_) => {}
            // Created by an earlier sync the cache has not shown yet — or
            // another template with the same hash: then the owner's
            // collisionCount must change the hash (upstream does the same).
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api
                    .get_opt(&plan.current)
                    .await
                    .map_err(|e| Error::Revision(plan.current.clone(), e))?;
                if existing.is_some_and(|e| e.data != rev.data) {
                    return Err(Error::HashCollision(plan.current.clone()));
                }
            }
            Err(e) => return Err(Error::Revision(plan.current.clone(), e)),
        }
    }
    if let Some((name, revision)) = &plan.bump {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "revision": revision })),
        )
        .await
        .map_err(|e| Error::Revision(name.clone(), e))?;
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Revision(name.clone(), e)),
        }
    }
    Ok(())
}

/// The pod the DaemonSet puts on `node`.
fn new_pod(
    ds: &DaemonSet,
    node: &str,
    hash: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Pod {
    let template: &PodTemplateSpec = &ds.spec.as_ref().expect("has spec").template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(history::HASH_LABEL.into(), hash.into());
    if let Some(generation) = ds.metadata.generation {
        labels.insert("pod-template-generation".into(), generation.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(eligibility::pod_spec_for_node(
            &template.spec.clone().unwrap_or_default(),
            node,
        )),
        status: None,
    }
}

async fn apply(
    ds: &DaemonSet,
    ctx: &Ctx,
    api: &Api<Pod>,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    hash: &str,
    todo: &plan::Plan,
) -> Result<(), Error> {
    let key = key(ds);
    for name in &todo.delete {
        let uid = ctx
            .pods
            .get(&ObjectRef::new(name).within(&ds.namespace().unwrap_or_default()))
            .and_then(|p| p.metadata.uid.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.expectations.expect_deletes(&key, uid);
                common::event(
                    &ctx.recorder,
                    ds,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::DeletePod(name.clone(), e)),
        }
    }
    for node in &todo.create {
        match api
            .create(&PostParams::default(), &new_pod(ds, node, hash, owner))
            .await
        {
            Ok(pod) => {
                let name = pod.name_any();
                ctx.expectations.expect_creates(&key, [name.clone()]);
                common::event(
                    &ctx.recorder,
                    ds,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                )
                .await;
            }
            Err(e) => {
                common::event(
                    &ctx.recorder,
                    ds,
                    true,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
                return Err(Error::CreatePod(key, node.clone(), e));
            }
        }
    }
    Ok(())
}
