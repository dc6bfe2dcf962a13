//! Namespace controller: empties a terminating namespace, then releases it.
//!
//! Upstream counterpart: `pkg/controller/namespace` (`NamespaceController`
//! and `deletion.NamespacedResourcesDeleter`). When a namespace carries a
//! deletionTimestamp and the `kubernetes` finalizer, every namespaced
//! resource the server serves (found through discovery) is deleted with
//! background propagation; once nothing is left, `kubernetes` is removed
//! through the `finalize` subresource and the API server deletes the
//! namespace. Objects that linger (finalizers, graceful pod deletion) make
//! the key come back with a growing delay.

mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

pub use reconcile::{
    conditions, reconcile, Content, Item, Plan, Snapshot, CONTENT_FAILURE, CONTENT_REMAINING,
    DISCOVERY_FAILURE, FINALIZER, FINALIZERS_REMAINING,
};

use crate::discovery::{self, Discovered, Served};

/// Errors of the namespace controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading namespace {0}: {1}")]
    Get(String, #[source] kube::Error),
    #[error("discovering namespaced resources: {0}")]
    Discovery(#[from] discovery::Error),
    #[error("listing {0}: {1}")]
    List(String, #[source] kube::Error),
    #[error("deleting {0}: {1}")]
    Delete(String, #[source] kube::Error),
    #[error("updating conditions of namespace {0}: {1}")]
    Conditions(String, #[source] kube::Error),
    #[error("finalizing namespace {0}: {1}")]
    Finalize(String, #[source] kube::Error),
}

/// The API calls namespace deletion makes.
#[async_trait]
pub trait NamespaceApi: Send + Sync {
    async fn get(&self, name: &str) -> Result<Option<Namespace>, Error>;
    async fn discover(&self) -> Result<Discovered, Error>;
    async fn list(&self, res: &Served, ns: &str) -> Result<Vec<Item>, Error>;
    async fn delete_all(&self, res: &Served, ns: &str) -> Result<(), Error>;
    async fn set_conditions(&self, name: &str, c: Vec<NamespaceCondition>) -> Result<(), Error>;
    /// PUT the namespace (its spec.finalizers already trimmed) to `/finalize`.
    async fn finalize(&self, ns: Namespace) -> Result<(), Error>;
}

/// What one sync concluded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Done,
    /// Content remains; try again later.
    Requeue,
}

/// The resources namespace deletion empties: namespaced, listable and
/// deletable one way or the other.
fn deletable(d: &Discovered) -> Vec<Served> {
    d.resources
        .iter()
        .filter(|s| s.namespaced && s.supports("list"))
        .filter(|s| s.supports("deletecollection") || s.supports("delete"))
        .cloned()
        .collect()
}

async fn snapshot(api: &dyn NamespaceApi, ns: &Namespace, d: &Discovered) -> Snapshot {
    let name = ns.name_any();
    let mut contents = Vec::new();
    for res in deletable(d) {
        let (items, error) = match api.list(&res, &name).await {
            Ok(items) => (items, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        contents.push(Content {
            resource: res.group_resource(),
            items,
            error,
        });
    }
    Snapshot {
        deleting: ns.metadata.deletion_timestamp.is_some(),
        spec_finalizers: ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default(),
        failed_groups: d.failed_groups.clone(),
        contents,
        conditions: ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default(),
        now: Some(Time(Timestamp::now())),
    }
}

/// Bring namespace `name` one step closer to deletion.
pub async fn sync(api: &dyn NamespaceApi, name: &str) -> Result<Outcome, Error> {
    let Some(ns) = api.get(name).await? else {
        return Ok(Outcome::Done);
    };
    let first = reconcile(&Snapshot {
        deleting: ns.metadata.deletion_timestamp.is_some(),
        spec_finalizers: ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default(),
        ..Snapshot::default()
    });
    if first.is_empty() {
        // Not terminating, or not ours to finalize.
        return Ok(Outcome::Done);
    }
    let found = api.discover().await?;
    let resources = deletable(&found);
    let mut snap = snapshot(api, &ns, &found).await;
    let plan = reconcile(&snap);
    if !plan.delete.is_empty() {
        for &i in &plan.delete {
            if let Err(e) = api.delete_all(&resources[i], name).await {
                tracing::warn!(namespace = name, error = %e, "namespace content deletion failed");
            }
        }
        // Look again: most content is gone right away, and the conditions
        // should describe what is left, not what was there.
        snap = snapshot(api, &ns, &found).await;
    }
    let plan = reconcile(&snap);
    if let Some(conditions) = plan.conditions {
        if let Err(e) = api.set_conditions(name, conditions).await {
            // Conditions only inform; they must not hold up deletion.
            tracing::warn!(namespace = name, error = %e, "namespace conditions not written");
        }
    }
    if plan.finalize {
        let mut fresh = api.get(name).await?.unwrap_or(ns);
        if let Some(f) = fresh.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
            f.retain(|f| f != FINALIZER);
        }
        api.finalize(fresh).await?;
        return Ok(Outcome::Done);
    }
    Ok(if plan.requeue {
        Outcome::Requeue
    } else {
        Outcome::Done
    })
}

/// [`NamespaceApi`] over the API server.
pub struct KubeNamespaceApi {
    client: kube::Client,
}

impl KubeNamespaceApi {
    pub fn new(client: kube::Client) -> KubeNamespaceApi {
        KubeNamespaceApi { client }
    }

    fn dynamic(&self, res: &Served, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &res.ar)
    }
}

#[async_trait]
impl NamespaceApi for KubeNamespaceApi {
    async fn get(&self, name: &str) -> Result<Option<Namespace>, Error> {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| Error::Get(name.into(), e))
    }

    async fn discover(&self) -> Result<Discovered, Error> {
        Ok(discovery::discover(&self.client).await?)
    }

    async fn list(&self, res: &Served, ns: &str) -> Result<Vec<Item>, Error> {
        let list = self
            .dynamic(res, ns)
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| Error::List(res.group_resource(), e))?;
        Ok(list
            .items
            .into_iter()
            .map(|o| Item {
                deleting: o.metadata.deletion_timestamp.is_some(),
                finalizers: o.metadata.finalizers.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete_all(&self, res: &Served, ns: &str) -> Result<(), Error> {
        let api = self.dynamic(res, ns);
        let dp = DeleteParams::background();
        let err = |e| Error::Delete(res.group_resource(), e);
        if res.supports("deletecollection") {
            api.delete_collection(&dp, &ListParams::default())
                .await
                .map_err(err)?;
            return Ok(());
        }
        let list = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| Error::List(res.group_resource(), e))?;
        for o in list.items {
            match api.delete(&o.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    async fn set_conditions(&self, name: &str, c: Vec<NamespaceCondition>) -> Result<(), Error> {
        let patch = serde_json::json!({"status": {"conditions": c}});
        Api::<Namespace>::all(self.client.clone())
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::Conditions(name.into(), e))?;
        Ok(())
    }

    async fn finalize(&self, ns: Namespace) -> Result<(), Error> {
        let name = ns.name_any();
        match Api::<Namespace>::all(self.client.clone())
            .replace_subresource("finalize", &name, &PostParams::default(), &ns)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::Finalize(name, e)),
        }
    }
}

/// Per-namespace retry counts, for the growing requeue delay.
#[derive(Default)]
struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    fn next(&self, key: &str) -> Duration {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_default();
        *n = (*n + 1).min(8);
        // 250 ms, 500 ms, ... capped at 32 s.
        Duration::from_millis(125 << *n)
    }

    fn reset(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

struct Ctx {
    api: KubeNamespaceApi,
    backoff: Backoff,
}

/// Run the namespace controller until the namespace watch ends.
pub async fn run(client: kube::Client) {
    let ctx = Arc::new(Ctx {
        api: KubeNamespaceApi::new(client.clone()),
        backoff: Backoff::default(),
    });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .run(
            |ns: Arc<Namespace>, ctx: Arc<Ctx>| async move {
                let name = ns.name_any();
                match sync(&ctx.api, &name).await? {
                    Outcome::Done => {
                        ctx.backoff.reset(&name);
                        Ok(Action::await_change())
                    }
                    Outcome::Requeue => Ok(Action::requeue(ctx.backoff.next(&name))),
                }
            },
            |ns: Arc<Namespace>, e: &Error, ctx: Arc<Ctx>| {
                tracing::warn!(namespace = %ns.name_any(), error = %e, "namespace sync failed");
                Action::requeue(ctx.backoff.next(&ns.name_any()))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
