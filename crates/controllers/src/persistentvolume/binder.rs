//! The binder's decisions, pure over the cached claims and volumes: which
//! volume an unbound claim gets, and which phase each side should show.
//!
//! Upstream counterpart: `pkg/controller/volume/persistentvolume`
//! (`syncUnboundClaim`, `syncBoundClaim`, `syncVolume`) and
//! `pkg/volume/util` `FindMatchingVolume` / `CheckVolumeModeMismatches`.
//! Immediate claims bind at once and a volume's nodeAffinity does not take
//! part, as upstream. Claims of a WaitForFirstConsumer class wait for a
//! pod using them to be on a node (upstream's scheduler picks that node
//! with its VolumeBinding plugin, which rkube's scheduler lacks, and
//! binds there); then only volumes whose nodeAffinity admits that node
//! are candidates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::pods::selector_matches;
use crate::resourcequota::quantity::Quantity;

/// Set on a claim once both sides of its binding are written.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on whichever side the controller (not a user) bound.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Set on a volume by the provisioner that made it.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The provisioner of classes whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// What to do with a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPlan {
    /// Already as it should be.
    Nothing,
    /// Stays Pending; the event to tell why (warning?, reason, message).
    Pending(Option<(bool, &'static str, String)>),
    /// Bind it to this volume (also finishes a half-written binding).
    Bind(String),
    /// Its volume is gone or taken: phase Lost.
    Lost(String),
}

/// What to do with a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePlan {
    Nothing,
    /// Set status.phase (and a message for Failed).
    Phase(&'static str, Option<String>),
    /// The controller's binding to a claim that went elsewhere: clear
    /// claimRef, phase Available.
    Unbind,
}

/// What the binder knows about a StorageClass a claim names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    pub provisioner: String,
    pub wait_for_first_consumer: bool,
}

/// The node a claim's first consumer is on, for WaitForFirstConsumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub node: String,
    pub labels: BTreeMap<String, String>,
}

/// Whether a volume's nodeAffinity admits the node (no affinity admits
/// every node; terms are ORed, a term's requirements ANDed).
pub fn admits(v: &PersistentVolume, node: &Consumer) -> bool {
    let Some(required) = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    crate::daemonset::eligibility::selector_admits(required, &node.node, &node.labels)
}

fn class_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn class_of_volume(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

fn capacity(v: &PersistentVolume) -> Option<Quantity> {
    let q = v.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    Quantity::parse(&q.0).ok()
}

fn request(c: &PersistentVolumeClaim) -> Option<Quantity> {
    let q = c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    Quantity::parse(&q.get("storage")?.0).ok()
}

/// Whether the volume's claimRef names this claim (an empty uid names any
/// claim of that name: a user pre-bound the volume).
pub fn refers_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == c.metadata.name
        && r.namespace == c.metadata.namespace
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == c.metadata.uid.as_deref())
}

/// Whether `v` could serve `c`, ignoring who else holds it.
pub fn satisfies(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), c.spec.as_ref()) else {
        return false;
    };
    if v.metadata.deletion_timestamp.is_some() || class_of_volume(v) != class_of_claim(c) {
        return false;
    }
    if volume_mode(vs.volume_mode.as_ref()) != volume_mode(cs.volume_mode.as_ref()) {
        return false;
    }
    let have = vs.access_modes.as_deref().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| have.contains(m)) {
        return false;
    }
    if let Some(sel) = &cs.selector {
        if !selector_matches(sel, v.metadata.labels.as_ref()) {
            return false;
        }
    }
    match (capacity(v), request(c)) {
        (Some(have), Some(want)) => have.milli >= want.milli,
        _ => false,
    }
}

/// The volume for an unbound claim: one pre-bound to it first, else the
/// smallest free one that satisfies it. `taken` holds volumes this
/// controller bound moments ago that the cache may not show yet.
pub fn best_match<'a>(
    c: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
    taken: &HashMap<String, String>,
    claim_key: &str,
    node: Option<&Consumer>,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<(&PersistentVolume, Quantity)> = None;
    for v in volumes {
        let name = v.metadata.name.as_deref().unwrap_or("");
        if taken.get(name).is_some_and(|k| k != claim_key) {
            continue;
        }
        if node.is_some_and(|n| !admits(v, n)) {
            continue;
        }
        let claimed = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some();
        if claimed {
            if refers_to(v, c) && satisfies(v, c) {
                return Some(v);
            }
            continue;
        }
        if !satisfies(v, c) {
            continue;
        }
        let size = capacity(v).unwrap_or_default();
        if best.as_ref().is_none_or(|(_, s)| size.milli < s.milli) {
            best = Some((v, size));
        }
    }
    best.map(|(v, _)| v)
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn annotated(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

/// Whether both sides of this claim's binding are fully written.
pub fn fully_bound(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    claim_phase(c) == "Bound"
        && volume_phase(v) == "Bound"
        && annotated(&c.metadata, BIND_COMPLETED)
        && v.spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.as_deref())
            == c.metadata.uid.as_deref()
}

/// The plan for one claim.
pub fn plan_claim(
    c: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    taken: &HashMap<String, String>,
    class: Option<&ClassInfo>,
    consumer: Option<&Consumer>,
) -> ClaimPlan {
    if c.metadata.deletion_timestamp.is_some() {
        return ClaimPlan::Nothing;
    }
    let key = format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or(""),
        c.metadata.name.as_deref().unwrap_or("")
    );
    let wanted = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if wanted.is_empty() {
        let delayed = class.is_some_and(|i| i.wait_for_first_consumer);
        let node = match (delayed, consumer) {
            (false, _) => None,
            (true, Some(n)) => Some(n),
            (true, None) => {
                return ClaimPlan::Pending(Some((
                    false,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".to_string(),
                )))
            }
        };
        if let Some(v) = best_match(c, volumes, taken, &key, node) {
            return ClaimPlan::Bind(v.metadata.name.clone().unwrap_or_default());
        }
        if let Some(n) = node {
            // The scheduler chose the node and the class makes volumes:
            // its provisioner takes over, as upstream's `provisionClaim`
            // tells for provisioners outside the controller manager.
            if let Some(i) = class.filter(|i| i.provisioner != NO_PROVISIONER) {
                return ClaimPlan::Pending(Some((false, "ExternalProvisioning", external(i))));
            }
            return ClaimPlan::Pending(Some((
                true,
                "FailedBinding",
                format!(
                    "no persistent volumes available for this claim on node \"{}\"",
                    n.node
                ),
            )));
        }
        let class_name = class_of_claim(c);
        let why = if class_name.is_empty() {
            Some((
                false,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set"
                    .to_string(),
            ))
        } else {
            match class {
                None => Some((
                    true,
                    "ProvisioningFailed",
                    format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
                )),
                Some(i) if i.wait_for_first_consumer => Some((
                    false,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".to_string(),
                )),
                Some(i) => Some((false, "ExternalProvisioning", external(i))),
            }
        };
        return ClaimPlan::Pending(why);
    }
    let Some(v) = volumes
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some(wanted))
    else {
        return if claim_phase(c) == "Bound" || claim_phase(c) == "Lost" {
            lost(
                c,
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
        } else {
            ClaimPlan::Pending(None)
        };
    };
    let claim_ref = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    match claim_ref {
        // Pre-bound by a user to a volume nobody holds: bind if it fits.
        None if satisfies(v, c) => ClaimPlan::Bind(wanted.to_string()),
        None => ClaimPlan::Pending(Some((
            true,
            "VolumeMismatch",
            "Cannot bind to requested volume: volume does not satisfy the claim".to_string(),
        ))),
        Some(_) if refers_to(v, c) => {
            if fully_bound(c, v) {
                ClaimPlan::Nothing
            } else {
                ClaimPlan::Bind(wanted.to_string())
            }
        }
        Some(_) if annotated(&c.metadata, BIND_COMPLETED) => lost(
            c,
            "Two claims are bound to the same volume, this one is bound incorrectly",
        ),
        Some(_) => ClaimPlan::Pending(None),
    }
}

/// upstream's ExternalProvisioning message.
fn external(i: &ClassInfo) -> String {
    format!(
        "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
        i.provisioner
    )
}

fn lost(c: &PersistentVolumeClaim, why: &str) -> ClaimPlan {
    if claim_phase(c) == "Lost" {
        ClaimPlan::Nothing
    } else {
        ClaimPlan::Lost(why.to_string())
    }
}

/// The plan for one volume; `claim` is its claimRef's claim as it stands
/// (None: gone).
pub fn plan_volume(v: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumePlan {
    let phase = volume_phase(v);
    let want = |p: &'static str| {
        if phase == p {
            VolumePlan::Nothing
        } else {
            VolumePlan::Phase(p, None)
        }
    };
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return want("Available");
    };
    // Pre-bound by a user, never bound yet: free until its claim comes.
    if r.uid.as_deref().unwrap_or("").is_empty() {
        return want("Available");
    }
    let Some(c) = claim.filter(|c| c.metadata.uid == r.uid) else {
        if phase == "Released" || phase == "Failed" {
            return VolumePlan::Nothing;
        }
        let policy = v
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        return match policy {
            "Retain" => VolumePlan::Phase("Released", None),
            // A provisioner outside the controller manager made it, and
            // deletes it (upstream: "waiting for external deleter").
            "Delete" if annotated(&v.metadata, PROVISIONED_BY) => {
                VolumePlan::Phase("Released", None)
            }
            // hostPath and local volumes have no deleter or recycler, as
            // upstream finds for volumes it did not provision.
            other => {
                VolumePlan::Phase(
                    "Failed",
                    Some(format!(
                    "error getting {} volume plugin for volume \"{}\": no volume plugin matched",
                    if other == "Delete" { "deleter" } else { "recycler" },
                    v.metadata.name.as_deref().unwrap_or("")
                )),
                )
            }
        };
    };
    let bound_to = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if bound_to.is_empty() {
        // The claim side is still to be written (or a user pre-bound it).
        return if phase.is_empty() || phase == "Pending" {
            VolumePlan::Phase("Available", None)
        } else {
            VolumePlan::Nothing
        };
    }
    if Some(bound_to) == v.metadata.name.as_deref() {
        return want("Bound");
    }
    if annotated(&v.metadata, BOUND_BY_CONTROLLER) {
        VolumePlan::Unbind
    } else {
        want("Released")
    }
}

#[cfg(test)]
#[path = "binder_tests.rs"]
mod tests;
