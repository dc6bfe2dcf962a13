//! PVC protection: a claim being deleted keeps its
//! `kubernetes.io/pvc-protection` finalizer (added by the API server's
//! StorageObjectInUseProtection admission) while a pod uses it, so
//! `kubectl delete pvc` of a claim in use leaves it Terminating until the
//! pod is gone.
//!
//! Upstream counterpart: `pkg/controller/volume/pvcprotection`. A pod uses
//! a claim when it is on a node, not finished (Succeeded/Failed), and one
//! of its volumes is the claim (directly or as a generic ephemeral
//! volume). The cache answers first; when it finds no user, the API server
//! is asked (a pod created moments ago may not be cached yet), as upstream
//! does before letting a claim go.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::endpoints::Backoff;
use crate::informers::Informers;

pub const FINALIZER: &str = "kubernetes.io/pvc-protection";

/// Errors of the pvc-protection controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing pods in {0}: {1}")]
    ListPods(String, #[source] kube::Error),
    #[error("removing the finalizer of {0}: {1}")]
    RemoveFinalizer(String, #[source] kube::Error),
}

/// The claim names a pod's volumes refer to.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            _ => None,
        })
        .collect()
}

/// Whether `pod` holds the claim `name` (of its own namespace).
pub fn uses(pod: &Pod, name: &str) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.node_name.as_deref().is_some_and(|n| !n.is_empty()));
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    scheduled && !finished && claim_names(pod).iter().any(|c| c == name)
}

/// The finalizers of `meta` without `finalizer`, when it is there.
pub fn without(finalizers: Option<&Vec<String>>, finalizer: &str) -> Option<Vec<String>> {
    let list = finalizers?;
    list.iter()
        .any(|f| f == finalizer)
        .then(|| list.iter().filter(|f| *f != finalizer).cloned().collect())
}

/// A merge patch that sets the finalizers, guarded by the resourceVersion
/// the decision was made on.
pub fn finalizers_patch(rv: Option<&String>, finalizers: Vec<String>) -> serde_json::Value {
    json!({"metadata": {"resourceVersion": rv, "finalizers": finalizers}})
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    backoff: Backoff,
}

async fn sync(claim: Arc<PersistentVolumeClaim>, ctx: &Ctx) -> Result<Action, Error> {
    if claim.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let Some(rest) = without(claim.metadata.finalizers.as_ref(), FINALIZER) else {
        return Ok(Action::await_change());
    };
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let in_cache = ctx
        .pods
        .state()
        .iter()
        .any(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && uses(p, &name));
    if in_cache {
        return Ok(Action::await_change());
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let live = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::ListPods(ns.clone(), e))?;
    if live.items.iter().any(|p| uses(p, &name)) {
        // The cache will show that pod soon; its changes requeue the claim.
        return Ok(Action::await_change());
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = finalizers_patch(claim.metadata.resource_version.as_ref(), rest);
    match claims
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // Gone already, or changed since: the next event decides again.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(Error::RemoveFinalizer(format!("{ns}/{name}"), e)),
    }
    Ok(Action::await_change())
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let claims = informers.store::<PersistentVolumeClaim>();
    let ctx = Arc::new(Ctx {
        client,
        pods: informers.store::<Pod>(),
        backoff: Backoff::default(),
    });
    let key = |c: &PersistentVolumeClaim| ObjectRef::from_obj(c).to_string();
    Controller::for_shared_stream(informers.shared_stream::<PersistentVolumeClaim>(), claims)
        // Any change of a pod (its end, its deletion) may free its claims.
        .watches_shared_stream(informers.shared_stream::<Pod>(), |pod| {
            let ns = pod.meta().namespace.clone().unwrap_or_default();
            claim_names(&pod)
                .into_iter()
                .map(|c| ObjectRef::new(&c).within(&ns))
                .collect::<Vec<_>>()
        })
        .run(
            move |claim, ctx: Arc<Ctx>| async move {
                let k = key(&claim);
                let out = sync(claim, &ctx).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&k);
                }
                out
            },
            move |claim, err, ctx| {
                tracing::warn!(claim = %key(&claim), error = %err, "pvc protection failed");
                Action::requeue(ctx.backoff.failed(&key(&claim)))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume,
    };

    fn pod(node: Option<&str>, phase: &str, claim: &str) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                volumes: Some(vec![
                    Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: claim.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: "scratch".into(),
                        ephemeral: Some(Default::default()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_placed_unfinished_pods_use_their_claims() {
        assert!(uses(&pod(Some("n"), "Running", "c"), "c"));
        assert!(uses(&pod(Some("n"), "Pending", "c"), "web-scratch"));
        assert!(!uses(&pod(Some("n"), "Running", "c"), "other"));
        assert!(!uses(&pod(None, "Pending", "c"), "c"), "not on a node yet");
        assert!(!uses(&pod(Some("n"), "Succeeded", "c"), "c"));
        assert!(!uses(&pod(Some("n"), "Failed", "c"), "c"));
    }

    #[test]
    fn the_finalizer_goes_and_others_stay() {
        let f = vec!["a".to_string(), FINALIZER.to_string()];
        assert_eq!(without(Some(&f), FINALIZER), Some(vec!["a".to_string()]));
        assert_eq!(without(Some(&vec!["a".to_string()]), FINALIZER), None);
        assert_eq!(without(None, FINALIZER), None);
        let p = finalizers_patch(Some(&"7".to_string()), vec![]);
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["metadata"]["finalizers"], json!([]));
    }
}
