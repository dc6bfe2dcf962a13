//! Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets — one per template, named by its pod-template-hash —
//! with the RollingUpdate or Recreate strategy, and reports progress.
//!
//! Upstream counterpart: `pkg/controller/deployment`. The sync follows
//! upstream's `syncDeployment`: claim ReplicaSets by selector, record
//! paused/resumed, then either only resize (paused, or spec.replicas
//! changed: proportional scaling) or roll out. Revisions live in the
//! `deployment.kubernetes.io/revision` annotations that `kubectl rollout
//! history|undo` read; `kubectl rollout undo` itself is client-side
//! (kubectl copies an old ReplicaSet's template back), and the controller
//! then finds that ReplicaSet as the new one and gives it the next
//! revision.
//!
//! Pure parts: [`util`] (fenceposts, revisions), [`rolling`] (sizes),
//! [`status`] (status and conditions); [`rollout`] applies them.

pub mod rolling;
pub mod rollout;
pub mod status;
pub mod util;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::informers::Informers;
use crate::pods;
use crate::replicaset::events::Recorder;
use rollout::Run;

/// Errors of one Deployment sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {0}: {1}")]
    Write(String, #[source] kube::Error),
    #[error("reading {0}: {1}")]
    Read(String, #[source] kube::Error),
    #[error("replica set name {0} is taken by another template; collisionCount raised")]
    Collision(String),
}

/// Shared by every sync.
pub struct Ctx {
    pub client: kube::Client,
    pub deployments: Store<Deployment>,
    pub replicasets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
    pub recorder: Recorder,
}

/// Run the Deployment controller until its streams end.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let deployments = informers.store::<Deployment>();
    let replicasets = informers.store::<ReplicaSet>();
    let pod_store = informers.store::<Pod>();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        deployments: deployments.clone(),
        replicasets: replicasets.clone(),
        pods: pod_store.clone(),
        recorder: Recorder::new(client, "deployment-controller"),
    });
    let _ = deployments.wait_until_ready().await;
    let _ = replicasets.wait_until_ready().await;
    let _ = pod_store.wait_until_ready().await;
    let (for_rs, for_pods) = (deployments.clone(), deployments.clone());
    let rs_for_pods = replicasets.clone();
    Controller::for_shared_stream(informers.shared_stream::<Deployment>(), deployments)
        .watches_shared_stream(
            informers.shared_stream::<ReplicaSet>(),
            move |rs: Arc<ReplicaSet>| deployments_of_rs(&for_rs, &rs),
        )
        .watches_shared_stream(informers.shared_stream::<Pod>(), move |pod: Arc<Pod>| {
            recreate_deployment_of_pod(&for_pods, &rs_for_pods, &pod)
        })
        .run(
            |d, ctx| async move { sync(d, ctx).await },
            |d, err, _| {
                tracing::warn!(deployment = %d.name_any(), error = %err, "deployment sync failed");
                Action::requeue(rollout::RETRY)
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// The Deployment controlling a ReplicaSet, or for an orphan every
/// Deployment in its namespace that selects it.
fn deployments_of_rs(
    deployments: &Store<Deployment>,
    rs: &ReplicaSet,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    match pods::controller_of(&rs.metadata) {
        Some(r) if r.kind == "Deployment" => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => Vec::new(),
        None => deployments
            .state_filter(|d| {
                d.metadata.namespace.as_deref() == Some(ns.as_str())
                    && selects(d, rs.metadata.labels.as_ref())
            })
            .iter()
            .map(|d| ObjectRef::from_obj(&**d))
            .collect(),
    }
}

/// A pod change matters to a Deployment only under Recreate, which waits
/// for the old pods to be gone before starting new ones.
fn recreate_deployment_of_pod(
    deployments: &Store<Deployment>,
    replicasets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let r = pods::controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&r.name).within(&ns))?;
    let dr = pods::controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let key = ObjectRef::new(&dr.name).within(&ns);
    let d = deployments.get(&key)?;
    (!util::is_rolling(&d)).then_some(key)
}

fn selects(d: &Deployment, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    d.spec
        .as_ref()
        .is_some_and(|s| !selector_empty(d) && pods::selector_matches(&s.selector, labels))
}

fn selector_empty(d: &Deployment) -> bool {
    d.spec.as_ref().is_none_or(|s| {
        s.selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && s.selector
                .match_expressions
                .as_ref()
                .is_none_or(|m| m.is_empty())
    })
}

async fn sync(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let d = ctx.deployments.get(&ObjectRef::from_obj(&*d)).unwrap_or(d);
    let mut run = Run {
        ctx: &ctx,
        d: (*d).clone(),
        rss: Vec::new(),
        now: Timestamp::from_second(Timestamp::now().as_second())
            .unwrap_or_else(|_| Timestamp::now()),
    };
    if selector_empty(&run.d) {
        run.event(
            true,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        let observed = run.d.status.as_ref().and_then(|s| s.observed_generation);
        if observed < run.d.metadata.generation {
            let mut st = run.d.status.clone().unwrap_or_default();
            st.observed_generation = run.d.metadata.generation;
            run.write_status(st).await?;
        }
        return Ok(Action::await_change());
    }
    run.rss = claim(&ctx, &run.d).await?;
    if run.d.metadata.deletion_timestamp.is_some() {
        let (new, _) = run.sets(false).await?;
        return run.sync_status(new).await;
    }
    run.check_paused().await?;
    if run.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) || run.is_scaling_event().await?
    {
        return run.sync_scale().await;
    }
    if util::is_rolling(&run.d) {
        run.rolling().await
    } else {
        run.recreate().await
    }
}

/// The ReplicaSets the Deployment controls after adopting matching
/// orphans and releasing ones its selector no longer matches (upstream
/// `getReplicaSetsForDeployment` with `ClaimReplicaSets`).
async fn claim(ctx: &Ctx, d: &Deployment) -> Result<Vec<ReplicaSet>, Error> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates = ctx.replicasets.state_filter(|rs| {
        rs.metadata.namespace.as_deref() == Some(ns.as_str())
            && pods::controller_of(&rs.metadata).is_none_or(|r| r.uid == uid)
    });
    let mut owned = Vec::new();
    let mut fresh_checked = None;
    for rs in candidates {
        let matches = selects(d, rs.metadata.labels.as_ref());
        let mine = pods::controller_of(&rs.metadata).is_some();
        if mine && matches {
            owned.push((*rs).clone());
        } else if mine && !deleting {
            let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
            refs.retain(|r| r.uid != uid);
            patch_refs(&api, &rs, refs).await?;
        } else if !mine && matches && !deleting && rs.metadata.deletion_timestamp.is_none() {
            // Re-read the Deployment before adopting, as upstream does: the
            // cache may not show that it is being deleted.
            if fresh_checked.is_none() {
                let fresh = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
                    .get_opt(&d.name_any())
                    .await
                    .map_err(|e| Error::Read(d.name_any(), e))?;
                fresh_checked = Some(fresh.is_some_and(|f| {
                    f.metadata.uid.as_deref() == Some(uid.as_str())
                        && f.metadata.deletion_timestamp.is_none()
                }));
            }
            if fresh_checked == Some(true) {
                let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                refs.push(pods::controller_ref("apps/v1", "Deployment", &d.metadata));
                if let Some(adopted) = patch_refs(&api, &rs, refs).await? {
                    owned.push(adopted);
                }
            }
        }
    }
    Ok(owned)
}

async fn patch_refs(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    refs: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<Option<ReplicaSet>, Error> {
    let name = rs.name_any();
    let body = json!({
        "metadata": {
            "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
            "resourceVersion": rs.metadata.resource_version,
        }
    });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(rs) => Ok(Some(rs)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(Error::Write(name, e)),
    }
}

#[cfg(test)]
mod tests;
