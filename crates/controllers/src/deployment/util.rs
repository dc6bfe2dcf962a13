//! Deployment arithmetic and bookkeeping, pure: surge and unavailability
//! fenceposts, revisions and the annotations that carry them, which
//! ReplicaSet is the new one, orderings.
//!
//! Upstream counterpart: `pkg/controller/deployment/util/deployment_util.go`
//! and the sort helpers of `pkg/controller/controller_utils.go`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::pods::POD_TEMPLATE_HASH;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Errors of the deployment arithmetic.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid value for IntOrString: invalid value {0:?}")]
    BadPercent(String),
}

/// spec.replicas (1 when unset, as the API server defaults it).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub fn is_rolling(d: &Deployment) -> bool {
    strategy_type(d) != "Recreate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// An int, or a percentage of `total` rounded up or down (upstream
/// `GetScaledValueFromIntOrPercent`).
pub fn scaled(
    v: Option<&IntOrString>,
    default: &str,
    total: i32,
    round_up: bool,
) -> Result<i32, Error> {
    let s = match v {
        Some(IntOrString::Int(i)) => return Ok(*i),
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    let pct: i64 = s
        .strip_suffix('%')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::BadPercent(s.to_string()))?;
    let prod = pct * i64::from(total);
    let v = if round_up {
        (prod + 99).div_euclid(100)
    } else {
        prod.div_euclid(100)
    };
    Ok(v as i32)
}

/// (maxSurge, maxUnavailable) resolved against the desired replicas; both
/// zero would deadlock a rollout, so unavailability becomes 1 then
/// (upstream `ResolveFenceposts`).
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), Error> {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let desired = replicas(d);
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), "25%", desired, true)?;
    let mut unavailable = scaled(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        desired,
        false,
    )?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// How far above spec.replicas a rolling update may go (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).map(|f| f.0).unwrap_or(0)
}

/// How many pods may be unavailable during a rolling update, never more
/// than spec.replicas (upstream `MaxUnavailable`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = replicas(d);
    if !is_rolling(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).map(|f| f.1.min(desired)).unwrap_or(0)
}

pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision annotation as a number (0 when absent or malformed).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter().map(|rs| revision(rs)).max().unwrap_or(0)
}

/// Whether the two templates are the same but for the pod-template-hash
/// label (upstream `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> serde_json::Value {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut() {
            if let Some(l) = m.labels.as_mut() {
                l.remove(POD_TEMPLATE_HASH);
                if l.is_empty() {
                    m.labels = None;
                }
            }
        }
        serde_json::to_value(&t).unwrap_or_default()
    }
    strip(a) == strip(b)
}

fn created(rs: &ReplicaSet) -> Option<k8s_openapi::jiff::Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, then by name (upstream `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Larger first; among equals newer first (`ReplicaSetsBySizeNewer`).
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Larger first; among equals older first (`ReplicaSetsBySizeOlder`).
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// Lowest revision first, then oldest (`ReplicaSetsByRevision`).
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| by_creation(a, b))
}

/// The ReplicaSet whose template is the Deployment's (the oldest such, in
/// case of duplicates), upstream `FindNewReplicaSet`.
pub fn find_new(d: &Deployment, rss: &[ReplicaSet]) -> Option<usize> {
    let template = &d.spec.as_ref()?.template;
    let mut idx: Vec<usize> = (0..rss.len()).collect();
    idx.sort_by(|a, b| by_creation(&rss[*a], &rss[*b]));
    idx.into_iter().find(|i| {
        rss[*i]
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, template))
    })
}

/// Annotations a Deployment passes on to its ReplicaSets: all but the
/// controller's own bookkeeping and kubectl's last-applied copy.
pub fn copyable(key: &str) -> bool {
    !matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Put `d`'s annotations, the revision and (for a new ReplicaSet) the
/// replica annotations on `rs` (upstream `SetNewReplicaSetAnnotations`).
/// True when something changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if copyable(k) && ann.get(k) != Some(v) {
            ann.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old = ann.get(REVISION).cloned().unwrap_or_default();
    let old_n: i64 = old.parse().unwrap_or(0);
    if old_n < new_revision {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if exists && !old.is_empty() {
            let history = match ann.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.clone(),
            };
            ann.insert(REVISION_HISTORY.into(), history);
        }
    }
    if !exists {
        let desired = replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired + max_surge(d));
    }
    changed
}

/// Record the Deployment's size on a ReplicaSet (used for proportional
/// scaling later). True when something changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if ann.get(k) != Some(&v) {
            ann.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

pub fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(&rs.metadata, DESIRED_REPLICAS)?.parse().ok()
}

pub fn max_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(&rs.metadata, MAX_REPLICAS)?.parse().ok()
}

/// The ReplicaSet's labels and selector with the hash added.
pub fn with_hash(
    labels: Option<&BTreeMap<String, String>>,
    hash: &str,
) -> BTreeMap<String, String> {
    let mut l = labels.cloned().unwrap_or_default();
    l.insert(POD_TEMPLATE_HASH.into(), hash.into());
    l
}
