//! The StatefulSet reconcile, pure: from the set's pods (by ordinal) to
//! the pods to create and delete, and the status.
//!
//! Upstream counterpart: `pkg/controller/statefulset/
//! stateful_set_control.go` (`updateStatefulSet`, `processReplica`,
//! `processCondemned`, `updateStatefulSetAfterInvariantEstablished`,
//! `computeReplicaStatus`). OrderedReady walks ordinals upwards and stops
//! at the first pod that is missing or not Running and Ready, and scales
//! down from the highest ordinal one pod at a time; Parallel does every
//! step at once. A rolling update then replaces the highest ordinal whose
//! revision is old, down to the partition, one at a time — or, with
//! `rollingUpdate.maxUnavailable` (upstream's MaxUnavailableStatefulSet),
//! as many at once as keep at most that many replicas unavailable.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::api::core::v1::Pod;

use crate::daemonset::common::{is_pod_available, is_pod_ready, phase};
use crate::daemonset::history::HASH_LABEL;

pub struct Snapshot {
    pub replicas: i32,
    /// The first ordinal (`spec.ordinals.start`).
    pub start: i32,
    /// OrderedReady (true) or Parallel.
    pub ordered: bool,
    /// The set's pods by ordinal.
    pub pods: BTreeMap<i32, Arc<Pod>>,
    /// RollingUpdate's partition; None for OnDelete.
    pub partition: Option<i32>,
    pub current_revision: String,
    pub update_revision: String,
    pub min_ready_seconds: i32,
    /// `rollingUpdate.maxUnavailable` resolved against the replicas (at
    /// least 1); None when unset, for the one-at-a-time update.
    pub max_unavailable: Option<i32>,
    pub now: jiff::Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Ordinals to create, and whether at the update revision (else the
    /// current one: below the partition the old template stays).
    pub create: Vec<(i32, bool)>,
    /// Pods to delete: name and uid (the uid is a precondition, so a
    /// stale cache never deletes the pod's successor).
    pub delete: Vec<(String, String)>,
}

/// The ordinal in a pod name `<set>-<ordinal>`, if it is one of the set's.
pub fn ordinal(set: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok().filter(|n: &i32| *n >= 0)
}

pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .map_or("", String::as_str)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

fn healthy(pod: &Pod, snap: &Snapshot) -> bool {
    running_and_ready(pod)
        && !terminating(pod)
        && is_pod_available(pod, snap.min_ready_seconds, snap.now)
}

fn id(pod: &Pod) -> (String, String) {
    (
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

pub fn reconcile(snap: &Snapshot) -> Plan {
    let mut plan = Plan::default();
    let end = snap.start + snap.replicas.max(0);
    let use_update = |ord: i32| snap.partition.is_none_or(|p| ord - snap.start >= p);
    // Replicas, lowest ordinal first.
    for ord in snap.start..end {
        match snap.pods.get(&ord) {
            None => {
                plan.create.push((ord, use_update(ord)));
                if snap.ordered {
                    return plan;
                }
            }
            Some(pod) if finished(pod) && !terminating(pod) => {
                // A failed (or, since 1.28, succeeded) pod is recreated.
                plan.delete.push(id(pod));
                if snap.ordered {
                    return plan;
                }
            }
            Some(pod) if snap.ordered && !healthy(pod, snap) => return plan,
            Some(_) => {}
        }
    }
    // Condemned pods (ordinals past the replicas), highest first.
    let first_unhealthy = (snap.start..end)
        .filter_map(|o| snap.pods.get(&o))
        .chain(snap.pods.range(end..).map(|(_, p)| p))
        .chain(snap.pods.range(..snap.start).map(|(_, p)| p))
        .find(|p| !healthy(p, snap))
        .map(|p| id(p).1);
    let condemned: Vec<&Arc<Pod>> = snap
        .pods
        .iter()
        .filter(|(o, _)| **o >= end || **o < snap.start)
        .map(|(_, p)| p)
        .collect();
    for pod in condemned.into_iter().rev() {
        if terminating(pod) {
            if snap.ordered {
                return plan;
            }
            continue;
        }
        if snap.ordered
            && !healthy(pod, snap)
            && first_unhealthy.as_deref() != Some(id(pod).1.as_str())
        {
            return plan;
        }
        plan.delete.push(id(pod));
        if snap.ordered {
            return plan;
        }
    }
    if !plan.create.is_empty() || !plan.delete.is_empty() {
        return plan;
    }
    // Rolling update: the highest old pod at or above the partition.
    let Some(partition) = snap.partition else {
        return plan;
    };
    if let Some(max) = snap.max_unavailable {
        update_up_to(snap, partition, max, &mut plan);
        return plan;
    }
    for ord in (snap.start + partition.max(0)..end).rev() {
        let Some(pod) = snap.pods.get(&ord) else {
            return plan;
        };
        if revision_of(pod) != snap.update_revision && !terminating(pod) {
            plan.delete.push(id(pod));
            return plan;
        }
        if !healthy(pod, snap) {
            return plan;
        }
    }
    plan
}

/// Delete old-revision pods from the highest ordinal down to the
/// partition while fewer than `max` replicas are unavailable, counting
/// each deletion (upstream `updateStatefulSetAfterInvariantEstablished`
/// with MaxUnavailableStatefulSet).
fn update_up_to(snap: &Snapshot, partition: i32, max: i32, plan: &mut Plan) {
    let end = snap.start + snap.replicas.max(0);
    let mut unavailable = (snap.start..end)
        .filter(|o| snap.pods.get(o).is_none_or(|p| !healthy(p, snap)))
        .count() as i32;
    for ord in (snap.start + partition.max(0)..end).rev() {
        if unavailable >= max {
            return;
        }
        let Some(pod) = snap.pods.get(&ord) else {
            continue;
        };
        if revision_of(pod) == snap.update_revision || terminating(pod) {
            continue;
        }
        plan.delete.push(id(pod));
        // An unhealthy pod was already counted.
        if healthy(pod, snap) {
            unavailable += 1;
        }
    }
}

/// The status the snapshot shows (`computeReplicaStatus`), with the
/// rollout completed when every replica is updated and ready.
pub fn status(
    snap: &Snapshot,
    generation: Option<i64>,
    collision_count: Option<i32>,
) -> StatefulSetStatus {
    let mut s = StatefulSetStatus {
        observed_generation: generation,
        collision_count,
        current_revision: Some(snap.current_revision.clone()),
        update_revision: Some(snap.update_revision.clone()),
        ..StatefulSetStatus::default()
    };
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for pod in snap.pods.values() {
        let created = !phase(pod).is_empty();
        if created {
            s.replicas += 1;
        }
        if running_and_ready(pod) {
            ready += 1;
            if is_pod_available(pod, snap.min_ready_seconds, snap.now) {
                available += 1;
            }
        }
        if created && !terminating(pod) {
            if revision_of(pod) == snap.current_revision {
                current += 1;
            }
            if revision_of(pod) == snap.update_revision {
                updated += 1;
            }
        }
    }
    s.ready_replicas = Some(ready);
    s.available_replicas = Some(available);
    s.current_replicas = Some(current);
    s.updated_replicas = Some(updated);
    if updated == snap.replicas && ready == snap.replicas && s.replicas == snap.replicas {
        s.current_revision = s.update_revision.clone();
        s.current_replicas = Some(updated);
    }
    s
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
