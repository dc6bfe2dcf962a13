//! Tables of persistent volumes, their claims, and resource quotas.
//!
//! Upstream counterpart: printPersistentVolume, printPersistentVolumeClaim
//! and printResourceQuota in pkg/printers/internalversion/printers.go, with
//! the access-mode and storage-class helpers of pkg/apis/core/helper.

use super::super::{age, age_column, column, decode, doc, name, name_column, wide, Printer};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The legacy annotation that overrides `storageClassName`.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// "RWO,ROX,RWX,RWOP" in that fixed order, for the modes present.
fn access_modes(modes: Option<&Vec<String>>) -> String {
    let modes = modes.map(Vec::as_slice).unwrap_or_default();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m == mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn storage_class(meta: &ObjectMeta, class_name: Option<&String>) -> String {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(BETA_STORAGE_CLASS))
        .or(class_name)
        .cloned()
        .unwrap_or_default()
}

/// The `storage` quantity, "0" when absent (Go's zero Quantity).
fn storage(resources: Option<&BTreeMap<String, Quantity>>) -> String {
    resources
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "0".to_owned(), |q| q.0.clone())
}

pub(in crate::table) static PERSISTENT_VOLUME: Printer = Printer {
    columns: || {
        let spec = "io.k8s.api.core.v1.PersistentVolumeSpec";
        let status = "io.k8s.api.core.v1.PersistentVolumeStatus";
        vec![
            name_column(),
            column("Capacity", "string", doc(spec, "capacity")),
            column("Access Modes", "string", doc(spec, "accessModes")),
            column(
                "Reclaim Policy",
                "string",
                doc(spec, "persistentVolumeReclaimPolicy"),
            ),
            column("Status", "string", doc(status, "phase")),
            column("Claim", "string", doc(spec, "claimRef")),
            column("StorageClass", "string", "StorageClass of the pv"),
            column(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pv",
            ),
            column("Reason", "string", doc(status, "reason")),
            age_column(),
            wide(column("VolumeMode", "string", doc(spec, "volumeMode"))),
        ]
    },
    row: |object, now| {
        let pv: core::PersistentVolume = decode("PersistentVolume", object)?;
        let spec = pv.spec.clone().unwrap_or_default();
        let status = pv.status.clone().unwrap_or_default();
        let claim = spec.claim_ref.as_ref().map_or_else(String::new, |c| {
            format!(
                "{}/{}",
                c.namespace.as_deref().unwrap_or_default(),
                c.name.as_deref().unwrap_or_default()
            )
        });
        let phase = if pv.metadata.deletion_timestamp.is_some() {
            "Terminating".to_owned()
        } else {
            status.phase.unwrap_or_default()
        };
        Ok(vec![
            name(&pv.metadata),
            storage(spec.capacity.as_ref()).into(),
            access_modes(spec.access_modes.as_ref()).into(),
            spec.persistent_volume_reclaim_policy
                .clone()
                .unwrap_or_default()
                .into(),
            phase.into(),
            claim.into(),
            storage_class(&pv.metadata, spec.storage_class_name.as_ref()).into(),
            spec.volume_attributes_class_name
                .clone()
                .unwrap_or_else(|| "<unset>".into())
                .into(),
            status.reason.unwrap_or_default().into(),
            age(&pv.metadata, now),
            spec.volume_mode.unwrap_or_else(|| "<unset>".into()).into(),
        ])
    },
};

pub(in crate::table) static PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: || {
        let spec = "io.k8s.api.core.v1.PersistentVolumeClaimSpec";
        let status = "io.k8s.api.core.v1.PersistentVolumeClaimStatus";
        vec![
            name_column(),
            column("Status", "string", doc(status, "phase")),
            column("Volume", "string", doc(spec, "volumeName")),
            column("Capacity", "string", doc(status, "capacity")),
            column("Access Modes", "string", doc(status, "accessModes")),
            column("StorageClass", "string", "StorageClass of the pvc"),
            column(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pvc",
            ),
            age_column(),
            wide(column("VolumeMode", "string", doc(spec, "volumeMode"))),
        ]
    },
    row: |object, now| {
        let pvc: core::PersistentVolumeClaim = decode("PersistentVolumeClaim", object)?;
        let spec = pvc.spec.clone().unwrap_or_default();
        let status = pvc.status.clone().unwrap_or_default();
        let phase = if pvc.metadata.deletion_timestamp.is_some() {
            "Terminating".to_owned()
        } else {
            status.phase.clone().unwrap_or_default()
        };
        let volume = spec.volume_name.clone().unwrap_or_default();
        // Capacity and modes are the bound volume's, so only once bound.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                storage(status.capacity.as_ref()),
                access_modes(status.access_modes.as_ref()),
            )
        };
        Ok(vec![
            name(&pvc.metadata),
            phase.into(),
            volume.into(),
            capacity.into(),
            modes.into(),
            storage_class(&pvc.metadata, spec.storage_class_name.as_ref()).into(),
            spec.volume_attributes_class_name
                .unwrap_or_else(|| "<unset>".into())
                .into(),
            age(&pvc.metadata, now),
            spec.volume_mode.unwrap_or_else(|| "<unset>".into()).into(),
        ])
    },
};

pub(in crate::table) static RESOURCE_QUOTA: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            column(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let quota: core::ResourceQuota = decode("ResourceQuota", object)?;
        let status = quota.status.clone().unwrap_or_default();
        let hard = status.hard.unwrap_or_default();
        let used = status.used.unwrap_or_default();
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        // BTreeMap iteration is the sorted order upstream sorts into.
        for (resource, hard_qty) in &hard {
            let used_qty = used.get(resource).map_or("0", |q| q.0.as_str());
            let entry = format!("{resource}: {used_qty}/{}", hard_qty.0);
            if resource.split('.').next() == Some("limits") && resource.contains('.') {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
        Ok(vec![
            name(&quota.metadata),
            requests.join(", ").into(),
            limits.join(", ").into(),
            age(&quota.metadata, now),
        ])
    },
};
