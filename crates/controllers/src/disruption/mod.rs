//! Disruption controller: the status of every PodDisruptionBudget —
//! how many of its pods are healthy, how many must be, and how many
//! disruptions that leaves.
//!
//! Upstream counterpart: `pkg/controller/disruption`. The API server's
//! eviction subresource spends `disruptionsAllowed` and records evicted
//! pods in `disruptedPods`; this controller recomputes the budget from the
//! pods (ready, not being deleted, not just evicted), resolves percentages
//! and `maxUnavailable` against the scale of the pods' controllers
//! (Deployment, ReplicaSet, ReplicationController, StatefulSet), drops
//! evictions whose pod did not go within two minutes, and sets
//! `observedGeneration`, which the eviction API waits for. A budget that
//! cannot be computed allows no disruption (condition SyncFailed).

pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::daemonset::common::event;
use crate::endpoints::index::{label_selector_selects, recorder, PodIndex};
use crate::endpoints::Backoff;
use crate::informers::Informers;
use kube::runtime::events::Recorder;
use status::{desired_status, Finder, Scale};

/// Errors of the disruption controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating status of poddisruptionbudget {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// Finds controllers in the shared caches.
struct Stores {
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    controllers: Store<ReplicationController>,
}

fn matches_uid<K: kube::Resource>(obj: &K, uid: &str) -> bool {
    obj.meta().uid.as_deref() == Some(uid)
}

impl Finder for Stores {
    fn scale(&self, ns: &str, kind: &str, name: &str, uid: &str) -> Option<Scale> {
        let scale = |uid: &str, replicas: Option<i32>| Scale {
            uid: uid.to_string(),
            replicas: replicas.unwrap_or(1),
        };
        match kind {
            "ReplicaSet" => {
                let rs = self
                    .replica_sets
                    .get(&ObjectRef::new(name).within(ns))
                    .filter(|r| matches_uid(&**r, uid))?;
                // A Deployment's ReplicaSet counts as the Deployment.
                if let Some(owner) = rs
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                {
                    let d = self
                        .deployments
                        .get(&ObjectRef::new(&owner.name).within(ns))
                        .filter(|d| matches_uid(&**d, &owner.uid))?;
                    return Some(scale(&owner.uid, d.spec.as_ref().and_then(|s| s.replicas)));
                }
                Some(scale(uid, rs.spec.as_ref().and_then(|s| s.replicas)))
            }
            "StatefulSet" => {
                let s = self
                    .stateful_sets
                    .get(&ObjectRef::new(name).within(ns))
                    .filter(|s| matches_uid(&**s, uid))?;
                Some(scale(uid, s.spec.as_ref().and_then(|s| s.replicas)))
            }
            "ReplicationController" => {
                let rc = self
                    .controllers
                    .get(&ObjectRef::new(name).within(ns))
                    .filter(|r| matches_uid(&**r, uid))?;
                Some(scale(uid, rc.spec.as_ref().and_then(|s| s.replicas)))
            }
            _ => None,
        }
    }
}

struct Ctx {
    client: kube::Client,
    pods: Arc<PodIndex>,
    stores: Stores,
    backoff: Backoff,
    recorder: Recorder,
}

/// Status equality that ignores how an empty map or list is spelled.
fn same_status(a: &PodDisruptionBudgetStatus, b: &PodDisruptionBudgetStatus) -> bool {
    let norm = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        if s.disrupted_pods.as_ref().is_some_and(|m| m.is_empty()) {
            s.disrupted_pods = None;
        }
        if s.conditions.as_ref().is_some_and(|c| c.is_empty()) {
            s.conditions = None;
        }
        s
    };
    norm(a) == norm(b)
}

async fn sync(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let name = pdb.name_any();
    // An empty or missing selector selects nothing, as upstream.
    let selector = pdb
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| {
            s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
        });
    let pods: Vec<Arc<Pod>> = match &selector {
        Some(sel) => ctx
            .pods
            .pods(&ns)
            .into_iter()
            .filter(|p| label_selector_selects(sel, p.metadata.labels.as_ref()))
            .collect(),
        None => Vec::new(),
    };
    let (want, recheck) = desired_status(&pdb, &pods, &ctx.stores, Timestamp::now());
    let current = pdb.status.clone().unwrap_or_default();
    let action = match recheck {
        Some(d) => Action::requeue(d + Duration::from_millis(10)),
        None => Action::await_change(),
    };
    if same_status(&current, &want) {
        return Ok(action);
    }
    // Said when the status changes, not on every sync.
    if pods.is_empty() {
        event(
            &ctx.recorder,
            &*pdb,
            false,
            "NoPods",
            "No matching pods found".into(),
        )
        .await;
    }
    if let Some(failed) = want
        .conditions
        .iter()
        .flatten()
        .find(|c| c.reason == "SyncFailed")
    {
        event(
            &ctx.recorder,
            &*pdb,
            true,
            "CalculateExpectedPodCountFailed",
            format!(
                "Failed to calculate the number of expected pods: {}",
                failed.message
            ),
        )
        .await;
    }
    let mut updated = (*pdb).clone();
    updated.status = Some(want);
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(action),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Status(format!("{ns}/{name}"), e)),
    }
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let pdbs = informers.store::<PodDisruptionBudget>();
    let pods = informers.store::<Pod>();
    let stores = Stores {
        replica_sets: informers.store::<ReplicaSet>(),
        deployments: informers.store::<Deployment>(),
        stateful_sets: informers.store::<StatefulSet>(),
        controllers: informers.store::<ReplicationController>(),
    };
    for ready in [
        pdbs.wait_until_ready().await,
        pods.wait_until_ready().await,
        stores.replica_sets.wait_until_ready().await,
        stores.deployments.wait_until_ready().await,
        stores.stateful_sets.wait_until_ready().await,
        stores.controllers.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    let index = PodIndex::new(pods);
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "controllermanager"),
        client,
        pods: index.clone(),
        stores,
        backoff: Backoff::default(),
    });
    let pdb_store = pdbs.clone();
    Controller::for_shared_stream(informers.shared_stream::<PodDisruptionBudget>(), pdbs)
        .watches_shared_stream(informers.shared_stream::<Pod>(), move |pod: Arc<Pod>| {
            index.observe(&pod);
            // Budgets are few: sync those of the pod's namespace.
            let ns = pod.namespace().unwrap_or_default();
            pdb_store
                .state()
                .iter()
                .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                .map(|p| ObjectRef::from_obj(&**p))
                .collect::<Vec<_>>()
        })
        .run(
            |pdb, ctx: Arc<Ctx>| async move {
                let key = format!("{}/{}", pdb.namespace().unwrap_or_default(), pdb.name_any());
                let out = sync(pdb, ctx.clone()).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |pdb, err, ctx| {
                let key = format!("{}/{}", pdb.namespace().unwrap_or_default(), pdb.name_any());
                tracing::warn!(pdb = %key, error = %err, "disruption budget sync failed");
                Action::requeue(ctx.backoff.failed(&key))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
