//! A PodDisruptionBudget's status from a snapshot of its pods and their
//! controllers' scale — pure.
//!
//! Upstream counterpart: `getExpectedPodCount`, `getExpectedScale`,
//! `countHealthyPods`, `buildDisruptedPodMap` and `updatePdbStatus` in
//! `pkg/controller/disruption/disruption.go`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::endpoints::index::is_pod_ready;

/// How long an eviction the API server granted may take to show up as a
/// deleted pod before the pod counts again (upstream `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

pub const CONDITION: &str = "DisruptionAllowed";

/// A controller the scale of which a budget counts against.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    pub uid: String,
    pub replicas: i32,
}

/// Finds a pod's controller and its scale (upstream's `podControllerFinder`s).
pub trait Finder {
    /// The scale that owns pods through `kind`/`name` in `ns`, following a
    /// Deployment's ReplicaSets up to the Deployment; `None` if unknown.
    fn scale(&self, ns: &str, kind: &str, name: &str, uid: &str) -> Option<Scale>;
}

/// `intstr.GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = pct * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// The summed scale of the pods' controllers (`getExpectedScale`).
pub fn expected_scale(pods: &[Arc<Pod>], finder: &dyn Finder) -> Result<i32, String> {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for pod in pods {
        let ns = pod.namespace().unwrap_or_default();
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        else {
            return Err(format!(
                "found no controller ref for pod {:?}",
                pod.name_any()
            ));
        };
        let Some(scale) = finder.scale(&ns, &owner.kind, &owner.name, &owner.uid) else {
            return Err(format!("found no controllers for pod {:?}", pod.name_any()));
        };
        if seen.insert(scale.uid.clone()) {
            total += scale.replicas;
        }
    }
    Ok(total)
}

/// (expectedCount, desiredHealthy) of `getExpectedPodCount`.
pub fn expected_pod_count(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    finder: &dyn Finder,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let expected = expected_scale(pods, finder)?;
        let max = scaled_value(max, expected, true)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
        Some(pct) => {
            let expected = expected_scale(pods, finder)?;
            Ok((expected, scaled_value(pct, expected, true)?))
        }
        None => Ok((0, 0)),
    }
}

/// The still-pending evictions of `disruptedPods`, and when the oldest
/// runs out (`buildDisruptedPodMap`).
pub fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Duration>) {
    let recorded = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(&pod.name_any()) else {
            continue;
        };
        let deadline = at.0 + SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
        let left = deadline.duration_since(now);
        if left.is_negative() {
            tracing::info!(pod = %pod.name_any(), "evicted pod was not deleted in time; it counts again");
            continue;
        }
        let left = left.unsigned_abs();
        recheck = Some(recheck.map_or(left, |r| r.min(left)));
        out.insert(pod.name_any(), at.clone());
    }
    (out, recheck)
}

/// Ready pods that are neither being deleted nor just evicted.
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| is_pod_ready(p))
        .count() as i32
}

/// Set the DisruptionAllowed condition, keeping its transition time
/// while its status holds (`apimeta.SetStatusCondition`).
pub fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    allowed: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let state = if allowed { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let observed = status.observed_generation;
    let cond = Condition {
        type_: CONDITION.into(),
        status: state.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: observed,
        last_transition_time: Time(now),
    };
    match conditions.iter_mut().find(|c| c.type_ == CONDITION) {
        Some(c) if c.status == state => {
            let at = c.last_transition_time.clone();
            *c = Condition {
                last_transition_time: at,
                ..cond
            };
        }
        Some(c) => *c = cond,
        None => conditions.push(cond),
    }
}

/// The status a budget should have, and when to look again (for
/// evictions that may time out).
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    finder: &dyn Finder,
    now: Timestamp,
) -> (PodDisruptionBudgetStatus, Option<Duration>) {
    let mut status = pdb.status.clone().unwrap_or_default();
    let (expected, desired) = match expected_pod_count(pdb, pods, finder) {
        Ok(v) => v,
        Err(msg) => {
            // failSafe: no disruptions until the budget can be computed.
            status.disruptions_allowed = 0;
            set_condition(&mut status, false, "SyncFailed", &msg, now);
            return (status, None);
        }
    };
    let (disrupted, recheck) = disrupted_pods(pdb, pods, now);
    let healthy = count_healthy(pods, &disrupted);
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    status.current_healthy = healthy;
    status.desired_healthy = desired;
    status.expected_pods = expected;
    status.disruptions_allowed = allowed;
    status.disrupted_pods = (!disrupted.is_empty()).then_some(disrupted);
    status.observed_generation = pdb.metadata.generation;
    let reason = if allowed > 0 {
        "SufficientPods"
    } else {
        "InsufficientPods"
    };
    set_condition(&mut status, allowed > 0, reason, "", now);
    (status, recheck)
}
