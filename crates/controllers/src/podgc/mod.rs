//! Pod garbage collector: terminated pods past a threshold, pods bound to
//! nodes that are gone, and terminating pods that were never scheduled.
//!
//! Upstream counterpart: `pkg/controller/podgc/gc_controller.go`. Every
//! period (20 s) the cached pods are checked:
//! - when more than the threshold (12500) have terminated (Succeeded or
//!   Failed), the oldest of them are deleted down to it;
//! - a pod bound to a node that is not there gets the DisruptionTarget
//!   condition ("PodGC: node no longer exists"), phase Failed, and is
//!   deleted with grace period 0 — after a 40 s quarantine and a fresh
//!   read of the node, so a node that is only slow to show up in the
//!   cache does not lose its pods;
//! - a terminating pod with no node is deleted with grace period 0 (no
//!   kubelet will ever confirm it).
//!
//! Settings, from the environment (upstream's flag in brackets):
//! `RKUBE_TERMINATED_POD_GC_THRESHOLD` [`--terminated-pod-gc-threshold`],
//! 0 or less turns that part off; `RKUBE_POD_GC_PERIOD` and
//! `RKUBE_POD_GC_QUARANTINE` (durations as `20s`) for tests.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::json;

use crate::informers::Informers;
use crate::nodelifecycle::parse_duration;
use plan::{terminated_to_delete, PodId};

/// Errors of the pod garbage collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deleting pod {0}: {1}")]
    Delete(String, #[source] kube::Error),
    #[error("reading node {0}: {1}")]
    GetNode(String, #[source] kube::Error),
}

/// The collector's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Terminated pods kept; 0 or less: no limit.
    pub threshold: i64,
    pub period: Duration,
    pub quarantine: Duration,
}

impl Settings {
    pub fn from_env() -> Settings {
        let dur = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| parse_duration(&v))
                .unwrap_or(Duration::from_secs(default))
        };
        Settings {
            threshold: std::env::var("RKUBE_TERMINATED_POD_GC_THRESHOLD")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(12500),
            period: dur("RKUBE_POD_GC_PERIOD", 20),
            quarantine: dur("RKUBE_POD_GC_QUARANTINE", 40),
        }
    }
}

struct Collector {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    settings: Settings,
    /// Nodes seen missing, and since when.
    missing_since: HashMap<String, Instant>,
}

impl Collector {
    async fn pass(&mut self) {
        let pods = self.pods.state();
        for id in terminated_to_delete(&pods, self.settings.threshold) {
            self.delete(&id, None).await;
        }
        self.orphans(&pods).await;
        for pod in pods.iter().filter(|p| plan::is_unscheduled_terminating(p)) {
            self.delete(&PodId::of(pod), Some(0)).await;
        }
    }

    async fn orphans(&mut self, pods: &[Arc<Pod>]) {
        let now = Instant::now();
        let known: HashSet<String> = self.nodes.state().iter().map(|n| n.name_any()).collect();
        let missing: HashSet<String> = pods
            .iter()
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .filter(|n| !n.is_empty() && !known.contains(n))
            .collect();
        self.missing_since.retain(|n, _| missing.contains(n));
        let mut gone = HashSet::new();
        for node in &missing {
            let since = *self.missing_since.entry(node.clone()).or_insert(now);
            if now.duration_since(since) < self.settings.quarantine {
                continue;
            }
            // The cache may lag: ask the server before deleting anything.
            match Api::<Node>::all(self.client.clone()).get_opt(node).await {
                Ok(None) => {
                    gone.insert(node.clone());
                }
                Ok(Some(_)) => {}
                Err(e) => tracing::warn!(error = %Error::GetNode(node.clone(), e), "pod gc"),
            }
        }
        for pod in pods {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if !node.is_some_and(|n| gone.contains(n)) {
                continue;
            }
            self.mark_failed(pod).await;
            self.delete(&PodId::of(pod), Some(0)).await;
        }
    }

    /// The DisruptionTarget condition and, unless finished, phase Failed.
    async fn mark_failed(&self, pod: &Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let mut status = json!({"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": Time(Timestamp::now()),
        }]});
        if !crate::endpoints::index::is_terminal(pod) {
            status["phase"] = json!("Failed");
        }
        let patch = json!({ "status": status });
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), error = %e, "pod gc: marking failed");
        }
    }

    async fn delete(&self, id: &PodId, grace: Option<u32>) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &id.namespace);
        let params = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        tracing::info!(pod = %id, "pod gc: deleting");
        match api.delete(&id.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(error = %Error::Delete(id.to_string(), e), "pod gc"),
        }
    }
}

/// Run until the process stops.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let pods = informers.store::<Pod>();
    let nodes = informers.store::<Node>();
    if pods.wait_until_ready().await.is_err() || nodes.wait_until_ready().await.is_err() {
        return;
    }
    let mut collector = Collector {
        client,
        pods,
        nodes,
        settings: Settings::from_env(),
        missing_since: HashMap::new(),
    };
    let mut tick = tokio::time::interval(collector.settings.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        collector.pass().await;
    }
}
