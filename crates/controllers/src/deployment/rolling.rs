//! How a Deployment sizes its ReplicaSets, pure: the rolling update's
//! scale-up of the new ReplicaSet and scale-down of the old ones, and the
//! proportional spread of a resize over the ReplicaSets of a rollout in
//! progress.
//!
//! Upstream counterpart: `pkg/controller/deployment/rolling.go`
//! (`reconcileNewReplicaSet`, `reconcileOldReplicaSets`,
//! `cleanupUnhealthyReplicas`, `scaleDownOldReplicaSetsForRollingUpdate`),
//! `sync.go` (`scale`) and `util/deployment_util.go` (`NewRSNewReplicas`,
//! `GetProportion`, `IsSaturated`, `FindActiveOrLatest`).
//!
//! Every function returns steps `(ReplicaSet name, new spec.replicas)` in
//! the order upstream would make them; the caller applies them.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::util::{self, rs_available, rs_replicas};

/// One resize of one ReplicaSet.
pub type Step = (String, i32);

fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// What the new ReplicaSet should grow to now (upstream `NewRSNewReplicas`):
/// for Recreate the full size; for a rolling update as much as maxSurge
/// leaves room for, never past spec.replicas.
pub fn new_rs_replicas(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    let desired = util::replicas(d);
    if !util::is_rolling(d) {
        return desired;
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = desired + util::max_surge(d);
    if current >= max_total {
        return rs_replicas(new);
    }
    let up = (max_total - current).min(desired - rs_replicas(new));
    rs_replicas(new) + up
}

/// The new ReplicaSet's resize, if any (upstream `reconcileNewReplicaSet`).
pub fn reconcile_new(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> Option<Step> {
    let desired = util::replicas(d);
    let have = rs_replicas(new);
    if have == desired {
        return None;
    }
    if have > desired {
        return Some((name(new), desired));
    }
    let want = new_rs_replicas(d, all, new);
    (want != have).then(|| (name(new), want))
}

/// The old ReplicaSets' scale-down (upstream `reconcileOldReplicaSets`):
/// first unhealthy replicas of old sets, oldest set first, as far as the
/// new set's own unavailable pods allow; then healthy ones while enough
/// pods stay available.
pub fn reconcile_old(d: &Deployment, old: &[&ReplicaSet], new: &ReplicaSet) -> Vec<Step> {
    let old_count: i32 = old.iter().map(|rs| rs_replicas(rs)).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let all_count = old_count + rs_replicas(new);
    let min_available = util::replicas(d) - util::max_unavailable(d);
    let new_unavailable = rs_replicas(new) - rs_available(new);
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sets: Vec<ReplicaSet> = old.iter().map(|rs| (*rs).clone()).collect();
    sets.sort_by(util::by_creation);
    let mut steps = Vec::new();
    // Unhealthy replicas first: removing them costs no availability.
    let mut cleaned = 0;
    for rs in sets.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let have = rs_replicas(rs);
        if have == 0 || have == rs_available(rs) {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(have - rs_available(rs));
        set_replicas(rs, have - down);
        steps.push((name(rs), have - down));
        cleaned += down;
    }
    // Then healthy ones, keeping minAvailable.
    let available: i32 = sets.iter().map(rs_available).sum::<i32>() + rs_available(new);
    if available <= min_available {
        return steps;
    }
    let total_down = available - min_available;
    let mut done = 0;
    for rs in sets.iter_mut() {
        if done >= total_down {
            break;
        }
        let have = rs_replicas(rs);
        if have == 0 {
            continue;
        }
        let down = have.min(total_down - done);
        set_replicas(rs, have - down);
        steps.push((name(rs), have - down));
        done += down;
    }
    steps
}

fn set_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn is_active(rs: &ReplicaSet) -> bool {
    rs_replicas(rs) > 0
}

/// The new ReplicaSet is fully sized and available (upstream `IsSaturated`).
pub fn is_saturated(d: &Deployment, new: Option<&ReplicaSet>) -> bool {
    let Some(rs) = new else { return false };
    let desired = util::replicas(d);
    util::desired_annotation(rs) == Some(desired)
        && rs_replicas(rs) == desired
        && rs_available(rs) == desired
}

/// A resize of the Deployment spread over its ReplicaSets (upstream
/// `scale`): one active set takes it all; a saturated new set lets the
/// old ones go; during a rolling update each active set gets its share
/// of the change, the rounding leftover going to the largest.
pub fn scale(d: &Deployment, new: Option<&ReplicaSet>, old: &[&ReplicaSet]) -> Vec<Step> {
    let desired = util::replicas(d);
    let mut olds: Vec<&ReplicaSet> = old.to_vec();
    olds.sort_by(|a, b| util::by_creation(b, a));
    let active: Vec<&ReplicaSet> = olds
        .iter()
        .copied()
        .chain(new)
        .filter(|rs| is_active(rs))
        .collect();
    let only = match active.len() {
        0 => new.or(olds.first().copied()),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(rs) = only {
        return if rs_replicas(rs) == desired {
            Vec::new()
        } else {
            vec![(name(rs), desired)]
        };
    }
    if is_saturated(d, new) {
        return olds
            .iter()
            .filter(|rs| is_active(rs))
            .map(|rs| (name(rs), 0))
            .collect();
    }
    if !util::is_rolling(d) {
        return Vec::new();
    }
    let mut sets = active;
    let total: i32 = sets.iter().map(|rs| rs_replicas(rs)).sum();
    let allowed = if desired > 0 {
        desired + util::max_surge(d)
    } else {
        0
    };
    let to_add = allowed - total;
    match to_add.cmp(&0) {
        std::cmp::Ordering::Greater => sets.sort_by(|a, b| util::by_size_newer(a, b)),
        std::cmp::Ordering::Less => sets.sort_by(|a, b| util::by_size_older(a, b)),
        std::cmp::Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(sets.len());
    for rs in &sets {
        let p = proportion(d, rs, to_add, added);
        sizes.push(rs_replicas(rs) + p);
        added += p;
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
    }
    sets.iter()
        .zip(sizes)
        .filter(|(rs, n)| rs_replicas(rs) != *n)
        .map(|(rs, n)| (name(rs), n))
        .collect()
}

/// One set's share of a resize (upstream `GetProportion`).
fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(d, rs);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// How much `rs` should change to keep its share of the Deployment at the
/// new size (upstream `getReplicaSetFraction`).
fn fraction(d: &Deployment, rs: &ReplicaSet) -> i32 {
    let desired = util::replicas(d);
    if desired == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = desired + util::max_surge(d);
    let annotated = util::max_annotation(rs)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}
