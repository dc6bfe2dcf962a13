//! The replica controller's decisions, pure over a snapshot: which pods
//! to adopt and release, how many to create, which to delete, and the
//! status to write.
//!
//! Upstream counterpart: `pkg/controller/replicaset/replica_set.go`
//! (`syncReplicaSet`, `manageReplicas`, `getPodsToDelete`) and
//! `replica_set_utils.go` (`calculateStatus`), with
//! `ControllerRefManager.ClaimPods` for adoption and release.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::workload::{Condition, Status};
use crate::pods;

/// At most this many pods are created or deleted in one sync (upstream's
/// `BurstReplicas`), so one huge scale does not starve other owners.
pub const BURST_REPLICAS: usize = 500;

/// Whether the owner's selector selects a pod's labels.
pub type Selects<'a> = dyn Fn(Option<&BTreeMap<String, String>>) -> bool + Sync + 'a;

/// What a sync looks at.
pub struct Snapshot<'a> {
    pub uid: &'a str,
    /// The owner is being deleted: adopt nothing, release nothing.
    pub deleting: bool,
    pub desired: i32,
    pub min_ready_seconds: i32,
    pub selects: &'a Selects<'a>,
    pub template_labels: Option<&'a BTreeMap<String, String>>,
    /// Pods whose controller is this owner.
    pub owned: Vec<&'a Pod>,
    /// Pods in the namespace without a controller.
    pub orphans: Vec<&'a Pod>,
    /// Active pods of the owner's siblings (same Deployment), for ranking.
    pub related: Vec<&'a Pod>,
    /// Expectations met: the cache shows this owner's last writes.
    pub expectations_met: bool,
    pub now: Timestamp,
}

/// What the sync should do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to take over (orphans matching the selector).
    pub adopt: Vec<String>,
    /// Pods to let go (owned but no longer matching).
    pub release: Vec<String>,
    /// Pods to create.
    pub create: usize,
    /// Pods to delete, worst first.
    pub delete: Vec<String>,
    /// The active pods the owner has once adoption and release are done.
    pub claimed: Vec<String>,
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The claimed active pods: owned ones still selected plus adoptable
/// orphans.
pub fn claim<'a>(snap: &Snapshot<'a>) -> (Vec<&'a Pod>, Vec<String>, Vec<String>) {
    let mut claimed = Vec::new();
    let mut adopt = Vec::new();
    let mut release = Vec::new();
    for p in &snap.owned {
        if (snap.selects)(p.metadata.labels.as_ref()) {
            claimed.push(*p);
        } else if !snap.deleting && p.metadata.deletion_timestamp.is_none() {
            release.push(name(p));
        }
    }
    if !snap.deleting {
        for p in &snap.orphans {
            if p.metadata.deletion_timestamp.is_none()
                && pods::is_active(p)
                && (snap.selects)(p.metadata.labels.as_ref())
            {
                adopt.push(name(p));
                claimed.push(*p);
            }
        }
    }
    claimed.retain(|p| pods::is_active(p));
    (claimed, adopt, release)
}

/// Decide one sync (upstream `syncReplicaSet` up to `manageReplicas`).
pub fn plan(snap: &Snapshot) -> Plan {
    let (claimed, adopt, release) = claim(snap);
    let mut plan = Plan {
        adopt,
        release,
        claimed: claimed.iter().map(|p| name(p)).collect(),
        ..Plan::default()
    };
    if !snap.expectations_met || snap.deleting {
        return plan;
    }
    let have = claimed.len() as i64;
    let want = i64::from(snap.desired.max(0));
    if have < want {
        plan.create = ((want - have) as usize).min(BURST_REPLICAS);
    } else if have > want {
        let n = ((have - want) as usize).min(BURST_REPLICAS);
        plan.delete = pods::pods_to_delete(&claimed, &snap.related, n, snap.now)
            .into_iter()
            .map(name)
            .collect();
    }
    plan
}

/// Slow-start batch sizes for `n` creations: 1, 2, 4, ... (upstream
/// `slowStartBatch`), so a failing template costs one call, not `n`.
pub fn batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = n;
    let mut size = 1;
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size *= 2;
    }
    out
}

/// What went wrong creating or deleting, for the ReplicaFailure condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    Create(String),
    Delete(String),
}

/// The status for these claimed pods (upstream `calculateStatus`).
pub fn status(
    snap: &Snapshot,
    claimed: &[&Pod],
    generation: i64,
    previous: &Status,
    failure: Option<&Failure>,
    now_rfc3339: &str,
) -> Status {
    let mut s = Status {
        replicas: claimed.len() as i32,
        observed_generation: generation,
        conditions: previous.conditions.clone(),
        ..Status::default()
    };
    for p in claimed {
        if let Some(t) = snap.template_labels {
            if pods::map_selects(t, p.metadata.labels.as_ref()) {
                s.fully_labeled_replicas += 1;
            }
        }
        if pods::is_ready(p) {
            s.ready_replicas += 1;
            if pods::is_available(p, snap.min_ready_seconds, snap.now) {
                s.available_replicas += 1;
            }
        }
    }
    let has_failure = s.conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(f) if !has_failure => {
            let (reason, message) = match f {
                Failure::Create(m) => ("FailedCreate", m),
                Failure::Delete(m) => ("FailedDelete", m),
            };
            s.conditions.push(Condition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.clone()),
                last_transition_time: Some(now_rfc3339.into()),
            });
        }
        None if has_failure => s.conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    s
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
