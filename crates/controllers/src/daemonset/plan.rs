//! The DaemonSet reconcile, pure: from nodes and pods to the pods to
//! create and delete, and the status to write.
//!
//! Upstream counterpart: `pkg/controller/daemon/daemon_controller.go`
//! (`manage`, `podsShouldBeOnNode`, `updateDaemonSetStatus`) and
//! `daemon/update.go` (`rollingUpdate`, `findUpdatedPodsOnNode`). The
//! rolling update deletes old pods within the maxUnavailable budget and
//! lets `manage` create their replacements, or with maxSurge starts the
//! new pod beside the old one and deletes the old once the new is
//! available.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSetStatus;
use k8s_openapi::api::core::v1::Pod;

use super::common::{is_pod_available, is_pod_ready, phase};
use super::eligibility::Fit;
use super::history::HASH_LABEL;

/// How the DaemonSet replaces pods whose template is old.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    OnDelete,
    /// Absolute budgets, percentages already scaled.
    RollingUpdate {
        max_unavailable: i32,
        max_surge: i32,
    },
}

/// Everything one reconcile looks at.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Every node and whether the daemon belongs there.
    pub nodes: BTreeMap<String, Fit>,
    /// The DaemonSet's pods by target node (nodes that may not exist).
    pub pods: BTreeMap<String, Vec<Arc<Pod>>>,
    /// The current template's revision hash.
    pub hash: String,
    pub strategy: Strategy,
    pub min_ready_seconds: i32,
    pub generation: Option<i64>,
    pub now: jiff::Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a current pod for.
    pub create: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// Failed pods among `delete`: (node, pod), for the failure backoff.
    pub failed: Vec<(String, String)>,
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .map(String::as_str)
}

fn created(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Scale a budget given as int or percent of `total`, rounding up as
/// upstream's `GetScaledValueFromIntOrPercent(..., true)`.
pub fn scaled(
    v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    total: i32,
    default: i32,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match v {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct * i64::from(total) + 99) / 100) as i32
        }
    }
}

/// The pods to create and delete.
pub fn reconcile(snap: &Snapshot) -> Plan {
    let mut plan = Plan::default();
    let surge = matches!(snap.strategy, Strategy::RollingUpdate { max_surge, .. } if max_surge > 0);
    // Pods for nodes that are gone.
    for (node, pods) in &snap.pods {
        if !snap.nodes.contains_key(node) {
            plan.delete
                .extend(pods.iter().filter(|p| !deleting(p)).map(|p| name(p)));
        }
    }
    for (node, fit) in &snap.nodes {
        let pods: Vec<&Arc<Pod>> = snap
            .pods
            .get(node)
            .map(|v| v.iter().filter(|p| !deleting(p)).collect())
            .unwrap_or_default();
        if !fit.should_continue_running {
            plan.delete.extend(pods.iter().map(|p| name(p)));
            continue;
        }
        // Failed daemon pods are replaced (upstream adds a backoff; the
        // next create waits for the delete to show in the cache).
        let (failed, mut live): (Vec<_>, Vec<_>) =
            pods.into_iter().partition(|p| phase(p) == "Failed");
        plan.delete.extend(failed.iter().map(|p| name(p)));
        plan.failed
            .extend(failed.iter().map(|p| (node.clone(), name(p))));
        if live.is_empty() {
            if fit.should_run {
                plan.create.push(node.clone());
            }
            continue;
        }
        live.sort_by_key(|p| (created(p), name(p)));
        if surge {
            // Keep the oldest current and the oldest old pod.
            let (new, old): (Vec<_>, Vec<_>) = live
                .into_iter()
                .partition(|p| hash_of(p) == Some(snap.hash.as_str()));
            plan.delete.extend(new.iter().skip(1).map(|p| name(p)));
            plan.delete.extend(old.iter().skip(1).map(|p| name(p)));
        } else {
            plan.delete.extend(live.iter().skip(1).map(|p| name(p)));
        }
    }
    if let Strategy::RollingUpdate {
        max_unavailable,
        max_surge,
    } = snap.strategy
    {
        let already: BTreeSet<String> = plan.delete.iter().cloned().collect();
        if max_surge > 0 {
            surge_update(snap, max_surge, &already, &mut plan);
        } else {
            unavailable_update(snap, max_unavailable.max(1), &already, &mut plan);
        }
    }
    plan
}

/// A node's current and old pod.
type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// The node's one current and one old pod, or None when it has several
/// of either (the manage step cleans those up first).
fn split<'a>(pods: &'a [Arc<Pod>], hash: &str) -> Option<NewAndOld<'a>> {
    let mut new = None;
    let mut old = None;
    for p in pods.iter().filter(|p| !deleting(p) && phase(p) != "Failed") {
        let slot = if hash_of(p) == Some(hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p);
    }
    Some((new, old))
}

fn unavailable_update(snap: &Snapshot, max: i32, skip: &BTreeSet<String>, plan: &mut Plan) {
    let available = |p: &Pod| is_pod_available(p, snap.min_ready_seconds, snap.now);
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for (node, fit) in &snap.nodes {
        if !fit.should_run {
            continue;
        }
        let pods = snap.pods.get(node).map(Vec::as_slice).unwrap_or_default();
        let Some((new, old)) = split(pods, &snap.hash) else {
            unavailable += 1;
            continue;
        };
        match (new, old) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(n), None) => {
                if !available(n) {
                    unavailable += 1;
                }
            }
            (None, Some(o)) => {
                if !available(o) {
                    unavailable += 1;
                    replace_now.push(name(o));
                } else {
                    candidates.push(name(o));
                }
            }
        }
    }
    let room = (max - unavailable).max(0) as usize;
    for n in replace_now
        .into_iter()
        .chain(candidates.into_iter().take(room))
    {
        if !skip.contains(&n) {
            plan.delete.push(n);
        }
    }
}

fn surge_update(snap: &Snapshot, max_surge: i32, skip: &BTreeSet<String>, plan: &mut Plan) {
    let available = |p: &Pod| is_pod_available(p, snap.min_ready_seconds, snap.now);
    let mut surging = 0;
    let mut create_now = Vec::new();
    let mut candidates = Vec::new();
    for (node, fit) in &snap.nodes {
        let pods = snap.pods.get(node).map(Vec::as_slice).unwrap_or_default();
        let Some((new, old)) = split(pods, &snap.hash) else {
            continue;
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(o)) => {
                if !fit.should_run {
                    continue;
                }
                if !available(o) {
                    create_now.push(node.clone());
                } else {
                    candidates.push(node.clone());
                }
            }
            (Some(n), Some(o)) => {
                if available(n) {
                    if !skip.contains(&name(o)) {
                        plan.delete.push(name(o));
                    }
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).max(0) as usize;
    plan.create.extend(
        create_now
            .into_iter()
            .chain(candidates.into_iter().take(room)),
    );
}

/// The status the snapshot shows (`updateDaemonSetStatus`).
pub fn status(snap: &Snapshot, previous: Option<&DaemonSetStatus>) -> DaemonSetStatus {
    let mut s = DaemonSetStatus {
        collision_count: previous.and_then(|p| p.collision_count),
        conditions: previous.and_then(|p| p.conditions.clone()),
        observed_generation: snap.generation,
        ..DaemonSetStatus::default()
    };
    let (mut available, mut updated) = (0, 0);
    for (node, fit) in &snap.nodes {
        let mut pods: Vec<&Arc<Pod>> = snap
            .pods
            .get(node)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let scheduled = !pods.is_empty();
        if fit.should_run {
            s.desired_number_scheduled += 1;
            if scheduled {
                s.current_number_scheduled += 1;
                // The oldest running pod speaks for the node.
                pods.sort_by_key(|p| (phase(p) != "Running", created(p), name(p)));
                let pod = pods[0];
                if is_pod_ready(pod) {
                    s.number_ready += 1;
                    if is_pod_available(pod, snap.min_ready_seconds, snap.now) {
                        available += 1;
                    }
                }
                if hash_of(pod) == Some(snap.hash.as_str()) {
                    updated += 1;
                }
            }
        } else if scheduled {
            s.number_misscheduled += 1;
        }
    }
    s.number_available = Some(available);
    s.updated_number_scheduled = Some(updated);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
