//! The provisioner's decisions, pure over one claim, its class and the
//! chosen node: whether to make a volume, and the volume itself.
//!
//! Upstream counterpart: the claim checks of the external-provisioner
//! library (`shouldProvision`: the class names this provisioner, the
//! scheduler has picked a node for a WaitForFirstConsumer claim, no volume
//! yet) and rancher/local-path-provisioner's `Provision` (a hostPath
//! directory per claim on the chosen node, pinned there by nodeAffinity).
//! The volume is named `pvc-<claim uid>` as upstream names provisioned
//! volumes, so a second attempt finds the first one's volume instead of
//! making another.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::persistentvolume::binder::PROVISIONED_BY;

/// The provisioner name k3s's `local-path` class carries; users' classes
/// and charts name it, so rkube answers to the same one.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The scheduler's choice of node for a WaitForFirstConsumer claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner a claim is handed to, as upstream's PV controller
/// marks it (and its older beta key).
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Where a node's agent keeps local-path volumes: each agent publishes
/// its own directory (agents have their own data dirs) on its Node.
pub const PATH_ANNOTATION: &str = "rkube.io/local-storage-path";
/// Simulated nodes keep nothing on disk; their volumes name the default
/// data dir's directory.
pub const DEFAULT_BASE: &str = "/var/lib/rkube/storage";
/// Label of simulated nodes (rkube-simulator's).
const SIMULATED: &str = "rkube.io/simulated";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// What to do with a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not this provisioner's, not yet, or already done.
    Skip,
    /// Never possible for this claim: tell it once (ProvisioningFailed).
    Refuse(String),
    /// Make its volume on this node.
    Provision { node: String },
}

/// The volume name of a claim's provisioned volume.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or(""))
}

/// Whether this provisioner should make a volume for `claim` now;
/// `class` is the class it names (None: absent or missing), `exists`
/// whether [`volume_name`] is already a volume.
pub fn decide(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    exists: bool,
) -> Decision {
    let Some(spec) = claim.spec.as_ref() else {
        return Decision::Skip;
    };
    if claim.metadata.deletion_timestamp.is_some()
        || claim.metadata.uid.as_deref().is_none_or(str::is_empty)
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || class.is_none_or(|c| c.provisioner != PROVISIONER)
        || exists
    {
        return Decision::Skip;
    }
    // A node-local directory needs the node first: only the scheduler's
    // annotation (WaitForFirstConsumer) gives it, so claims of an
    // Immediate class of ours wait here.
    let Some(node) = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE))
        .filter(|n| !n.is_empty())
    else {
        return Decision::Skip;
    };
    // A directory on one node can serve one node's pods: the modes that
    // promise more are refused, as local-path-provisioner does.
    if let Some(bad) = spec
        .access_modes
        .iter()
        .flatten()
        .find(|m| *m != "ReadWriteOnce" && *m != "ReadWriteOncePod")
    {
        return Decision::Refuse(format!(
            "local-path volumes support only the ReadWriteOnce and ReadWriteOncePod access modes, not {bad}"
        ));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Decision::Refuse(
            "local-path volumes are directories: volumeMode Block is not supported".into(),
        );
    }
    if request(claim).is_none() {
        return Decision::Refuse("the claim requests no storage".into());
    }
    Decision::Provision { node: node.clone() }
}

fn request(
    claim: &PersistentVolumeClaim,
) -> Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
}

/// Whether the claim already names this provisioner as its own.
pub fn names_provisioner(claim: &PersistentVolumeClaim) -> bool {
    let a = claim.metadata.annotations.as_ref();
    [STORAGE_PROVISIONER, BETA_STORAGE_PROVISIONER]
        .iter()
        .all(|k| a.and_then(|a| a.get(*k)).is_some_and(|v| v == PROVISIONER))
}

/// The directory a node keeps local-path volumes in: what its agent
/// published, the default for simulated nodes, None while a real node's
/// agent has not said yet.
pub fn base_of(node: &Node) -> Option<PathBuf> {
    let meta = &node.metadata;
    if let Some(p) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(PATH_ANNOTATION))
    {
        return Some(PathBuf::from(p));
    }
    meta.labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SIMULATED))
        .then(|| PathBuf::from(DEFAULT_BASE))
}

/// The node's kubernetes.io/hostname label (its name when unlabelled),
/// what the volume's nodeAffinity pins.
pub fn hostname_of(node: &Node) -> String {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HOSTNAME))
        .or(node.metadata.name.as_ref())
        .cloned()
        .unwrap_or_default()
}

/// `<base>/pvc-<uid>_<namespace>_<name>`, local-path-provisioner's layout,
/// so that an operator reading the directory knows whose data it is.
pub fn directory(base: &Path, claim: &PersistentVolumeClaim) -> PathBuf {
    base.join(format!(
        "{}_{}_{}",
        volume_name(claim),
        claim.metadata.namespace.as_deref().unwrap_or(""),
        claim.metadata.name.as_deref().unwrap_or("")
    ))
}

/// The volume for `claim` of `class` on the node whose hostname label is
/// `hostname`, its directory under `base`; already bound on its side
/// (claimRef), for the binder to finish.
pub fn build_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    hostname: &str,
    base: &Path,
) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let capacity = request(claim).map(|q| BTreeMap::from([("storage".to_string(), q.clone())]));
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name(claim)),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity,
            access_modes: spec.access_modes.clone(),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            storage_class_name: class.metadata.name.clone(),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            mount_options: class.mount_options.clone(),
            host_path: Some(HostPathVolumeSource {
                path: directory(base, claim).display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
