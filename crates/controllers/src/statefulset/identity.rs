//! A StatefulSet pod's identity: name, labels, hostname and subdomain,
//! and the PersistentVolumeClaims its volumes point at.
//!
//! Upstream counterpart: `pkg/controller/statefulset/stateful_set_utils.go`
//! (`newStatefulSetPod`, `initIdentity`, `updateStorage`,
//! `getPersistentVolumeClaims`, `getPersistentVolumeClaimName`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::daemonset::common::controller_ref;
use crate::daemonset::history::HASH_LABEL;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims pod `ordinal` needs, as they are created: the template's
/// labels plus the set's selector labels, owned by the set when the
/// retention policy deletes them with it.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, &set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: delete_with_set
                        .then(|| vec![controller_ref("apps/v1", "StatefulSet", &set.metadata)]),
                    ..ObjectMeta::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The owner reference a scaled-down pod puts on its claims.
pub fn pod_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Pod `ordinal` of `set` from `template`, at `revision`.
pub fn new_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    ordinal: i32,
    revision: &str,
    owner: &OwnerReference,
) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // Each claim template replaces a template volume of the same name.
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if !templates.is_empty() {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        for t in &templates {
            let tname = t.metadata.name.clone().unwrap_or_default();
            volumes.retain(|v| v.name != tname);
            volumes.push(Volume {
                name: tname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&tname, &set_name, ordinal),
                    read_only: None,
                }),
                ..Volume::default()
            });
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn set(when_deleted: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("set-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                service_name: Some("nginx".into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    match_expressions: None,
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("www".into()),
                        ..ObjectMeta::default()
                    },
                    ..PersistentVolumeClaim::default()
                }]),
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some(when_deleted.into()),
                        when_scaled: Some("Retain".into()),
                    },
                ),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn pods_get_stable_identity_and_their_claims() {
        let s = set("Retain");
        let owner = controller_ref("apps/v1", "StatefulSet", &s.metadata);
        let pod = new_pod(&s, &PodTemplateSpec::default(), 2, "web-abc", &owner);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[HASH_LABEL], "web-abc");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vol = &spec.volumes.unwrap()[0];
        assert_eq!(vol.name, "www");
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-2"
        );
    }

    #[test]
    fn claims_are_named_per_ordinal_and_owned_per_retention_policy() {
        let c = &claims(&set("Retain"), 1)[0];
        assert_eq!(c.metadata.name.as_deref(), Some("www-web-1"));
        assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(c.metadata.owner_references, None);
        let c = &claims(&set("Delete"), 1)[0];
        assert_eq!(
            c.metadata.owner_references.as_ref().unwrap()[0].uid,
            "set-uid"
        );
    }
}
