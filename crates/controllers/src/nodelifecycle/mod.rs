//! Node lifecycle controller: nodes that stop heartbeating go Ready=Unknown
//! and get tainted, and pods on them are marked not ready and evicted.
//!
//! Upstream counterpart: `pkg/controller/nodelifecycle` (monitorNodeHealth,
//! with TaintBasedEvictions) and `pkg/controller/tainteviction`. Every
//! monitor period each node's heartbeats (Ready's lastHeartbeatTime and
//! its kube-node-lease Lease) are checked; one that has not moved for the
//! grace period gets Ready, MemoryPressure, DiskPressure and PIDPressure
//! set to Unknown ("Kubelet stopped posting node status."). Conditions
//! and `spec.unschedulable` map to the `node.kubernetes.io/*` taints
//! (NoSchedule, and NoExecute for not-ready/unreachable), and pods that do
//! not tolerate a NoExecute taint are deleted (see [`eviction`]).
//!
//! Settings, from the environment since the controller manager has no
//! flags for them yet (upstream's flag names in brackets):
//! - `RKUBE_NODE_MONITOR_GRACE_PERIOD` [`--node-monitor-grace-period`]:
//!   default `40s`; tests use a few seconds.
//! - `RKUBE_NODE_MONITOR_PERIOD` [`--node-monitor-period`]: default `5s`,
//!   or a quarter of a shorter grace period.
//!
//! - `RKUBE_NODE_EVICTION_RATE` [`--node-eviction-rate`]: NoExecute
//!   taints per second per zone, default 0.1;
//!   `RKUBE_SECONDARY_NODE_EVICTION_RATE` [`--secondary-node-eviction-rate`]
//!   default 0.01; `RKUBE_UNHEALTHY_ZONE_THRESHOLD`
//!   [`--unhealthy-zone-threshold`] default 0.55;
//!   `RKUBE_LARGE_CLUSTER_SIZE_THRESHOLD` [`--large-cluster-size-threshold`]
//!   default 50 (see [`zones`]).
//!
//! Durations are written as `40s`, `500ms`, `2m` or plain seconds.

pub mod eviction;
pub mod health;
pub mod zones;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::daemonset::common::event;
use crate::endpoints::index::{recorder, PodIndex};
use crate::endpoints::Backoff;
use crate::informers::Informers;
use eviction::{decide, tolerations_of, Decision};
use health::{desired_taints, needs_new_no_execute, ready_status, unknown_conditions, Health};
use kube::runtime::events::Recorder;

/// Where node Leases live.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Errors of the node lifecycle controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating status of node {0}: {1}")]
    NodeStatus(String, #[source] kube::Error),
    #[error("updating taints of node {0}: {1}")]
    Taints(String, #[source] kube::Error),
    #[error("marking pod {0} not ready: {1}")]
    PodStatus(String, #[source] kube::Error),
    #[error("evicting pod {0}: {1}")]
    Evict(String, #[source] kube::Error),
}

/// The controller's timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub grace: Duration,
    pub period: Duration,
    pub rates: zones::Rates,
}

impl Settings {
    /// Upstream's defaults, overridden from the environment.
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| parse_duration(&v));
        let mut s = Self::with(
            var("RKUBE_NODE_MONITOR_GRACE_PERIOD"),
            var("RKUBE_NODE_MONITOR_PERIOD"),
        );
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n >= 0.0)
        };
        let r = &mut s.rates;
        r.eviction = num("RKUBE_NODE_EVICTION_RATE").unwrap_or(r.eviction);
        r.secondary = num("RKUBE_SECONDARY_NODE_EVICTION_RATE").unwrap_or(r.secondary);
        r.unhealthy_threshold =
            num("RKUBE_UNHEALTHY_ZONE_THRESHOLD").unwrap_or(r.unhealthy_threshold);
        r.large_cluster =
            num("RKUBE_LARGE_CLUSTER_SIZE_THRESHOLD").map_or(r.large_cluster, |n| n as usize);
        s
    }

    pub fn with(grace: Option<Duration>, period: Option<Duration>) -> Settings {
        let grace = grace.unwrap_or(Duration::from_secs(40));
        let period = period.unwrap_or_else(|| {
            (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
        });
        Settings {
            grace,
            period,
            rates: zones::Rates::default(),
        }
    }
}

/// `40s`, `500ms`, `2m`, `1h` or plain seconds.
pub use rkube_machinery::duration::parse as parse_duration;

fn now_time() -> Time {
    Time(Timestamp::now())
}

/// The node monitor: one pass per period over every node.
struct Monitor {
    client: kube::Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Arc<PodIndex>,
    settings: Settings,
    health: HashMap<String, Health>,
    zones: zones::Zones,
    recorder: Recorder,
}

impl Monitor {
    async fn pass(&mut self) {
        let now = Instant::now();
        let nodes = self.nodes.state();
        let names: std::collections::HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.health.retain(|name, _| names.contains(name));
        // Health first, then the zones' states from the Ready statuses it
        // left, then taints paced by those states (upstream's order).
        let mut checked = Vec::with_capacity(nodes.len());
        for node in nodes {
            match self.check(&node, now).await {
                Ok(n) => checked.push(n),
                Err(e) => {
                    tracing::warn!(error = %e, "node health check failed");
                    checked.push((*node).clone());
                }
            }
        }
        let zoned: Vec<(String, bool)> = checked
            .iter()
            .map(|n| (zones::zone_of(n), ready_status(n) == Some("True")))
            .collect();
        let outcome = self
            .zones
            .update(zoned.iter().map(|(z, r)| (z.as_str(), *r)), now);
        if outcome.recovered {
            for h in self.health.values_mut() {
                h.probe = now;
            }
        }
        for (node, (zone, _)) in checked.iter().zip(&zoned) {
            let no_execute = outcome.mode == zones::Mode::Limited
                && (!needs_new_no_execute(node) || self.zones.admit(zone, now));
            if let Err(e) = self.taint(node, no_execute).await {
                tracing::warn!(error = %e, "node tainting failed");
            }
        }
    }

    /// Health from the heartbeats; a node gone quiet for the grace period
    /// gets its conditions Unknown. Returns the node as it now is.
    async fn check(&mut self, node: &Node, now: Instant) -> Result<Node, Error> {
        let name = node.name_any();
        let lease = self
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let h = self
            .health
            .entry(name.clone())
            .or_insert_with(|| Health::new(node, lease.as_deref(), now));
        h.observe(node, lease.as_deref(), now);
        let expired = h.expired(now, self.settings.grace);
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = node.clone();
        if expired {
            if let Some(conditions) = unknown_conditions(&node, &now_time()) {
                tracing::info!(node = %name, "node stopped posting status; Ready is Unknown");
                event(
                    &self.recorder,
                    &node,
                    false,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
                let patch = json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "status": {"conditions": conditions},
                });
                node = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::NodeStatus(name.clone(), e))?;
            }
        }
        Ok(node)
    }

    /// Taints from the node's conditions (the NoExecute ones only when
    /// `no_execute`), and its pods not ready when it stopped being.
    async fn taint(&mut self, node: &Node, no_execute: bool) -> Result<(), Error> {
        let name = node.name_any();
        let was = self.health.get(&name).and_then(|h| h.last_ready.clone());
        let api: Api<Node> = Api::all(self.client.clone());
        let ready = ready_status(node).map(str::to_string);
        if let Some(taints) = desired_taints(node, &now_time(), no_execute) {
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": taints},
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::Taints(name.clone(), e))?;
        }
        // Pods stop being ready when their node does.
        if ready.as_deref() != Some("True") && was.as_deref() != ready.as_deref() {
            self.mark_pods_not_ready(&name).await?;
        }
        if let Some(h) = self.health.get_mut(&name) {
            h.last_ready = ready;
        }
        Ok(())
    }

    /// `MarkPodsNotReady`: the Ready condition of the node's pods False.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        for pod in self.pods.pods(node) {
            let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone())
            else {
                continue;
            };
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            ready.status = "False".into();
            ready.last_transition_time = Some(now_time());
            let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let patch = json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": {"conditions": conditions},
            });
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    event(
                        &self.recorder,
                        &*pod,
                        true,
                        "NodeNotReady",
                        "Node is not ready".into(),
                    )
                    .await
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(Error::PodStatus(format!("{ns}/{name}"), e)),
            }
        }
        Ok(())
    }
}

struct EvictCtx {
    client: kube::Client,
    nodes: Store<Node>,
    backoff: Backoff,
    recorder: Recorder,
}

/// Evict `pod` if its node's NoExecute taints call for it now; otherwise
/// come back when its toleration runs out.
async fn evict(pod: Arc<Pod>, ctx: Arc<EvictCtx>) -> Result<Action, Error> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Ok(Action::await_change());
    };
    let Some(node) = ctx.nodes.get(&ObjectRef::new(&node_name)) else {
        return Ok(Action::await_change());
    };
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    match decide(tolerations_of(&pod), &taints, Timestamp::now()) {
        Decision::Keep => Ok(Action::await_change()),
        Decision::EvictIn(left) => Ok(Action::requeue(left + Duration::from_millis(10))),
        Decision::EvictNow => {
            let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            tracing::info!(pod = %format!("{ns}/{name}"), node = %node_name, "taint eviction");
            event(
                &ctx.recorder,
                &*pod,
                false,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{name}"),
            )
            .await;
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let condition = json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": now_time(),
            }]}});
            // Strategic merge keys conditions by type: the others stay.
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Strategic(&condition),
                )
                .await;
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
                Err(e) => Err(Error::Evict(format!("{ns}/{name}"), e)),
            }
        }
    }
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let settings = Settings::from_env();
    let nodes = informers.store::<Node>();
    let leases = informers.store::<Lease>();
    let pods = informers.store::<Pod>();
    for ready in [
        nodes.wait_until_ready().await,
        leases.wait_until_ready().await,
        pods.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    let by_node = PodIndex::by_node(pods.clone());
    // Fill the index from the cache before the first pass.
    for pod in pods.state() {
        by_node.observe(&pod);
    }
    let mut monitor = Monitor {
        client: client.clone(),
        nodes: nodes.clone(),
        leases,
        pods: by_node.clone(),
        settings,
        health: HashMap::new(),
        zones: zones::Zones::new(settings.rates),
        recorder: recorder(&client, "node-controller"),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(monitor.settings.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            monitor.pass().await;
        }
    });
    let ctx = Arc::new(EvictCtx {
        recorder: recorder(&client, "taint-eviction-controller"),
        client,
        nodes,
        backoff: Backoff::default(),
    });
    let index = by_node.clone();
    let pod_stream = informers.shared_stream::<Pod>().map(move |p| {
        index.observe(&p);
        p
    });
    Controller::for_shared_stream(pod_stream, pods)
        .watches_shared_stream(informers.shared_stream::<Node>(), move |node: Arc<Node>| {
            // Only a node with NoExecute taints can evict anything.
            let tainted = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.effect == "NoExecute"));
            if !tainted {
                return Vec::new();
            }
            by_node
                .pods(&node.name_any())
                .iter()
                .map(|p| ObjectRef::from_obj(&**p))
                .collect()
        })
        .run(
            |pod, ctx: Arc<EvictCtx>| async move {
                let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                let out = evict(pod, ctx.clone()).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |pod, err, ctx| {
                let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                tracing::warn!(pod = %key, error = %err, "taint eviction failed");
                Action::requeue(ctx.backoff.failed(&key))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
