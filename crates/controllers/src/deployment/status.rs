//! A Deployment's status and conditions, pure: replica counts summed
//! over its ReplicaSets, Available (minimum availability), Progressing
//! (with the progress deadline), ReplicaFailure.
//!
//! Upstream counterpart: `pkg/controller/deployment/sync.go`
//! (`calculateStatus`), `progress.go` (`syncRolloutStatus`,
//! `requeueStuckDeployment`) and `util/deployment_util.go`
//! (`DeploymentComplete`, `DeploymentProgressing`, `DeploymentTimedOut`,
//! `SetDeploymentCondition`).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::util::{self, rs_actual, rs_available, rs_ready, rs_replicas};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

pub fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Set a condition (upstream `SetDeploymentCondition`): the same status
/// and reason change nothing; the same status keeps the transition time.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_.clone());
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

/// progressDeadlineSeconds, unless unset or "never" (MaxInt32).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()?
        .progress_deadline_seconds
        .filter(|s| *s != i32::MAX)
}

fn nz(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The status the ReplicaSets add up to (upstream `calculateStatus`).
pub fn calculate(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let prev = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nz(all.iter().map(|rs| rs_actual(rs)).sum()),
        updated_replicas: nz(new.map_or(0, rs_actual)),
        ready_replicas: nz(all.iter().map(|rs| rs_ready(rs)).sum()),
        available_replicas: nz(available),
        unavailable_replicas: nz((total - available).max(0)),
        collision_count: prev.collision_count,
        conditions: prev.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= util::replicas(d) - util::max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    s
}

fn get(n: Option<i32>) -> i32 {
    n.unwrap_or(0)
}

/// Every replica is updated and available, and the status is current.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let desired = util::replicas(d);
    get(s.updated_replicas) == desired
        && get(s.replicas) == desired
        && get(s.available_replicas) == desired
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Something moved since the last status (upstream `DeploymentProgressing`).
pub fn progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = get(old.replicas) - get(old.updated_replicas);
    let new_old = get(s.replicas) - get(s.updated_replicas);
    get(s.updated_replicas) > get(old.updated_replicas)
        || new_old < old_old
        || get(s.ready_replicas) > get(old.ready_replicas)
        || get(s.available_replicas) > get(old.available_replicas)
}

/// No progress within the deadline (upstream `DeploymentTimedOut`).
pub fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(s, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + SignedDuration::from_secs(deadline.into()) < now),
    }
}

/// The status after a rollout step, with Progressing and ReplicaFailure
/// brought up to date (upstream `syncRolloutStatus`).
pub fn rollout(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut s = calculate(d, all, new, now);
    if progress_deadline(d).is_none() {
        remove_condition(&mut s, PROGRESSING);
    }
    let cur = condition(&s, PROGRESSING).cloned();
    let is_complete = get(s.replicas) == get(s.updated_replicas)
        && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if progress_deadline(d).is_some() && !is_complete {
        let rs_name = new
            .and_then(|rs| rs.metadata.name.clone())
            .unwrap_or_default();
        if complete(d, &s) {
            let msg = if new.is_some() {
                format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
            } else {
                "Deployment has successfully progressed.".into()
            };
            set_condition(
                &mut s,
                new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now),
            );
        } else if progressing(d, &s) {
            let msg = if new.is_some() {
                format!("ReplicaSet \"{rs_name}\" is progressing.")
            } else {
                "Deployment is progressing.".into()
            };
            let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, msg, now);
            // Progress refreshes lastUpdateTime (the deadline's clock) even
            // with the same reason; the transition time stays.
            if let Some(cur) = &cur {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, PROGRESSING);
            }
            set_condition(&mut s, c);
        } else if timed_out(d, &s, now) {
            let msg = if new.is_some() {
                format!("ReplicaSet \"{rs_name}\" has timed out progressing.")
            } else {
                "Deployment has timed out progressing.".into()
            };
            set_condition(
                &mut s,
                new_condition(PROGRESSING, "False", TIMED_OUT, msg, now),
            );
        }
    }
    match replica_failure(all, new) {
        Some(c) => set_condition(&mut s, c),
        None => remove_condition(&mut s, REPLICA_FAILURE),
    }
    s
}

/// A ReplicaFailure of the new ReplicaSet (or else of any), as the
/// Deployment's own (upstream `getReplicaFailures`).
fn replica_failure(all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let of = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .map(|c| DeploymentCondition {
                type_: REPLICA_FAILURE.into(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
    };
    new.and_then(of)
        .or_else(|| all.iter().find_map(|rs| of(rs)))
}

/// When to look again for a rollout that may miss its deadline (upstream
/// `requeueStuckDeployment`); None when no deadline can pass.
pub fn recheck_after(
    d: &Deployment,
    s: &DeploymentStatus,
    now: Timestamp,
) -> Option<SignedDuration> {
    let deadline = progress_deadline(d)?;
    let c = condition(s, PROGRESSING)?;
    if complete(d, s) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let at = c.last_update_time.as_ref()?.0 + SignedDuration::from_secs(deadline.into());
    let after = at.duration_since(now);
    Some(after.max(SignedDuration::from_secs(1)))
}

/// Paused and resumed are reported on Progressing, unless the deadline
/// was already missed (upstream `checkPausedConditions`). True when the
/// status changed.
pub fn paused_conditions(d: &Deployment, s: &mut DeploymentStatus, now: Timestamp) -> bool {
    if progress_deadline(d).is_none() {
        return false;
    }
    let reason = condition(s, PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT) {
        return false;
    }
    let paused_cond = reason.as_deref() == Some(PAUSED);
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused && !paused_cond {
        set_condition(
            s,
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                now,
            ),
        );
        true
    } else if !paused && paused_cond {
        set_condition(
            s,
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                now,
            ),
        );
        true
    } else {
        false
    }
}
