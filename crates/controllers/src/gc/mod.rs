//! Garbage collector: deletes objects whose owners are gone and carries out
//! orphan and foreground deletion.
//!
//! Upstream counterpart: `pkg/controller/garbagecollector`. Every listable
//! resource found through discovery is watched (metadata only); the
//! watches keep one [`graph::Graph`] of ownerReferences up to date, each
//! change marking the objects whose decision it may change. A pass asks
//! [`graph::reconcile_some`] what to do about those (like upstream's
//! per-object queues) and applies it through [`GcApi`]; a whole-graph
//! [`graph::reconcile`] follows each discovery and failed actions. The
//! decisions per object are upstream's. Discovery is repeated every 30 s
//! (upstream's resync period) so new resources such as CRDs are watched.

pub mod graph;
mod watch;

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::ApiResource;

pub use graph::{reconcile, reconcile_some, Action, Graph, Node, Propagation};
pub use watch::run;

use crate::discovery::Discovered;

/// Errors of the garbage collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading owner {0} of {1}: {2}")]
    GetOwner(String, String, #[source] kube::Error),
    #[error("deleting {0}: {1}")]
    Delete(String, #[source] kube::Error),
    #[error("patching {0}: {1}")]
    Patch(String, #[source] kube::Error),
    #[error("discovering resources: {0}")]
    Discovery(#[from] crate::discovery::Error),
}

/// The API calls garbage collection makes.
#[async_trait]
pub trait GcApi: Send + Sync {
    /// True when `owner` (referenced by `dependent`) is confirmed gone: not
    /// found, or found with another uid. False when it exists or its kind
    /// is not served (then nothing can be concluded).
    async fn owner_absent(&self, dependent: &Node, owner: &OwnerReference) -> Result<bool, Error>;
    async fn delete(&self, node: &Node, propagation: Propagation) -> Result<(), Error>;
    /// Replace `node`'s ownerReferences (guarded by its resourceVersion).
    async fn set_owners(&self, node: &Node, owners: Vec<OwnerReference>) -> Result<(), Error>;
    /// Replace `node`'s finalizers (guarded by its resourceVersion).
    async fn set_finalizers(&self, node: &Node, finalizers: Vec<String>) -> Result<(), Error>;
}

async fn confirmed(api: &dyn GcApi, node: &Node, owners: &[OwnerReference]) -> Result<bool, Error> {
    for o in owners {
        if !api.owner_absent(node, o).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Apply `plan`; returns how many actions failed (they are retried by a
/// later sweep, which sees fresher state).
pub async fn execute(api: &dyn GcApi, plan: Vec<Action>) -> usize {
    let mut failed = 0;
    for action in plan {
        if let Err(e) = apply(api, &action).await {
            tracing::warn!(error = %e, "garbage collector action failed");
            failed += 1;
        }
    }
    failed
}

async fn apply(api: &dyn GcApi, action: &Action) -> Result<(), Error> {
    match action {
        Action::Delete {
            node,
            propagation,
            unblock,
            confirm_absent,
        } => {
            if !confirmed(api, node, confirm_absent).await? {
                return Ok(());
            }
            if !unblock.is_empty() {
                let owners = node
                    .owners
                    .iter()
                    .cloned()
                    .map(|mut o| {
                        if unblock.contains(&o.uid) {
                            o.block_owner_deletion = Some(false);
                        }
                        o
                    })
                    .collect();
                api.set_owners(node, owners).await?;
            }
            tracing::info!(object = %node.describe(), ?propagation, "garbage collecting");
            api.delete(node, *propagation).await
        }
        Action::RemoveOwners {
            node,
            owners,
            confirm_absent,
        } => {
            if !confirmed(api, node, confirm_absent).await? {
                return Ok(());
            }
            let kept = node
                .owners
                .iter()
                .filter(|o| !owners.contains(&o.uid))
                .cloned()
                .collect();
            api.set_owners(node, kept).await
        }
        Action::RemoveFinalizer { node, finalizer } => {
            let kept = node
                .finalizers
                .iter()
                .filter(|f| f != finalizer)
                .cloned()
                .collect();
            api.set_finalizers(node, kept).await
        }
    }
}

/// [`GcApi`] over the API server.
pub struct KubeGcApi {
    client: kube::Client,
    served: Discovered,
}

impl KubeGcApi {
    pub fn new(client: kube::Client, served: Discovered) -> KubeGcApi {
        KubeGcApi { client, served }
    }

    fn api(&self, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    /// A merge patch of `metadata`, carrying the resourceVersion the
    /// decision was made on so that a changed object is not clobbered.
    async fn patch_meta(&self, node: &Node, meta: serde_json::Value) -> Result<(), Error> {
        let mut meta = meta;
        if let Some(rv) = &node.resource_version {
            meta["resourceVersion"] = rv.clone().into();
        }
        let patch = serde_json::json!({ "metadata": meta });
        self.api(&node.ar, node.namespace.as_deref())
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::Patch(node.describe(), e))?;
        Ok(())
    }
}

fn or_null<T: serde::Serialize>(v: Vec<T>) -> serde_json::Value {
    if v.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    }
}

#[async_trait]
impl GcApi for KubeGcApi {
    async fn owner_absent(&self, dependent: &Node, owner: &OwnerReference) -> Result<bool, Error> {
        let group = owner
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("");
        let Some(served) = self.served.by_kind(group, &owner.kind) else {
            return Ok(false);
        };
        let ns = if served.namespaced {
            match dependent.namespace.as_deref() {
                Some(ns) => Some(ns),
                // A cluster-scoped object cannot be owned by a namespaced one.
                None => return Ok(false),
            }
        } else {
            None
        };
        match self.api(&served.ar, ns).get_metadata_opt(&owner.name).await {
            Ok(None) => Ok(true),
            Ok(Some(o)) => Ok(o.metadata.uid.as_deref() != Some(owner.uid.as_str())),
            Err(e) => Err(Error::GetOwner(owner.name.clone(), dependent.describe(), e)),
        }
    }

    async fn delete(&self, node: &Node, propagation: Propagation) -> Result<(), Error> {
        let dp = DeleteParams {
            propagation_policy: Some(match propagation {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
                Propagation::Orphan => PropagationPolicy::Orphan,
            }),
            preconditions: Some(Preconditions {
                uid: Some(node.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .api(&node.ar, node.namespace.as_deref())
            .delete(&node.name, &dp)
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a namesake with another uid.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(Error::Delete(node.describe(), e)),
        }
    }

    async fn set_owners(&self, node: &Node, owners: Vec<OwnerReference>) -> Result<(), Error> {
        self.patch_meta(
            node,
            serde_json::json!({ "ownerReferences": or_null(owners) }),
        )
        .await
    }

    async fn set_finalizers(&self, node: &Node, finalizers: Vec<String>) -> Result<(), Error> {
        self.patch_meta(
            node,
            serde_json::json!({ "finalizers": or_null(finalizers) }),
        )
        .await
    }
}

#[cfg(test)]
mod tests;
