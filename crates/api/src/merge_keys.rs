//! Strategic-merge-patch metadata of the built-in types: which list fields
//! merge by which key, and the type of every field, so a strategic merge
//! engine can walk an object from its root kind.
//!
//! Upstream counterpart: the `patchStrategy` / `patchMergeKey` struct tags in
//! k8s.io/api/*/types.go (read by apimachinery's strategicpatch through
//! `LookupPatchMetadataForStruct`). The tags are not in the OpenAPI documents
//! k8s-openapi is generated from, so they are transcribed here; the type tree
//! comes from k8s-openapi's schemas (see [`crate::schemas`]).
//!
//! A field with no entry has no directive: strategic merge replaces such a
//! list wholesale (e.g. `PodSpec.tolerations`) and merges such a map key by
//! key, exactly as for an untagged Go field.

use crate::{catalog, schemas};

/// How strategic merge combines a field's old and new values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `patchStrategy:"merge"`: lists merge element-wise by the merge key (or
    /// as a set, for lists of scalars without one).
    Merge,
    /// `patchStrategy:"replace"`: the patch value replaces the old one.
    Replace,
    /// `patchStrategy:"retainKeys"` on a struct: keys absent from the patch
    /// are cleared (used where fields form a union, e.g. a deployment strategy).
    RetainKeys,
    /// `patchStrategy:"merge,retainKeys"`: merge list elements by key, and
    /// inside each element keep only keys named by the patch (volume sources).
    RetainKeysMerge,
}

/// The patch directive of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchMeta {
    pub strategy: Strategy,
    pub merge_key: Option<&'static str>,
}

const fn merge(key: &'static str) -> PatchMeta {
    PatchMeta {
        strategy: Strategy::Merge,
        merge_key: Some(key),
    }
}

const fn retain_keys_merge(key: &'static str) -> PatchMeta {
    PatchMeta {
        strategy: Strategy::RetainKeysMerge,
        merge_key: Some(key),
    }
}

/// Merge of a list of scalars: the union, order kept.
const SET: PatchMeta = PatchMeta {
    strategy: Strategy::Merge,
    merge_key: None,
};

const RETAIN_KEYS: PatchMeta = PatchMeta {
    strategy: Strategy::RetainKeys,
    merge_key: None,
};

const BY_TYPE: PatchMeta = merge("type");
const BY_NAME: PatchMeta = merge("name");

/// (definition name, JSON field name, directive), transcribed from the Go
/// struct tags of the versions served (see [`crate::catalog::groups`]).
const PATCH_META: &[(&str, &str, PatchMeta)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        SET,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        merge("uid"),
    ),
    // core/v1
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        retain_keys_merge("name"),
    ),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "containers", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", merge("ip")),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        merge("topologyKey"),
    ),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", BY_NAME),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        retain_keys_merge("name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        merge("containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", BY_NAME),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        merge("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        merge("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        merge("containerPort"),
    ),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", BY_NAME),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        merge("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        merge("devicePath"),
    ),
    ("io.k8s.api.core.v1.PodStatus", "conditions", BY_TYPE),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", merge("ip")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", merge("ip")),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        retain_keys_merge("name"),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", SET),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", BY_TYPE),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", BY_TYPE),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", merge("port")),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", BY_TYPE),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", BY_NAME),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        BY_TYPE,
    ),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", BY_TYPE),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        BY_TYPE,
    ),
    ("io.k8s.api.core.v1.ComponentStatus", "conditions", BY_TYPE),
    // apps/v1
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", RETAIN_KEYS),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", BY_TYPE),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", BY_TYPE),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", BY_TYPE),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        BY_TYPE,
    ),
    // batch/v1, autoscaling/v2, policy/v1
    ("io.k8s.api.batch.v1.JobStatus", "conditions", BY_TYPE),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        BY_TYPE,
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        BY_TYPE,
    ),
    // networking, storage, admission, flowcontrol, apiregistration
    (
        "io.k8s.api.networking.v1.ServiceCIDRStatus",
        "conditions",
        BY_TYPE,
    ),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", BY_NAME),
    (
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
        "webhooks",
        BY_NAME,
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "webhooks",
        BY_NAME,
    ),
    (
        "io.k8s.api.flowcontrol.v1.FlowSchemaStatus",
        "conditions",
        BY_TYPE,
    ),
    (
        "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus",
        "conditions",
        BY_TYPE,
    ),
    (
        "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus",
        "conditions",
        BY_TYPE,
    ),
];

/// The strategic-merge directive of `field` in the definition `type_name`
/// (e.g. `("io.k8s.api.core.v1.PodSpec", "containers")` → merge by `name`),
/// or `None` for a field without one.
pub fn patch_meta(type_name: &str, field: &str) -> Option<PatchMeta> {
    PATCH_META
        .iter()
        .find(|(t, f, _)| *t == type_name && *f == field)
        .map(|(_, _, meta)| *meta)
}

/// The definition name of a field's type; for a list or map field, of its
/// elements (`PodSpec.containers` → `io.k8s.api.core.v1.Container`).
/// `None` for scalar fields and unknown names.
pub fn field_type(type_name: &str, field: &str) -> Option<&'static str> {
    schemas::referenced_type(schemas::property(type_name, field)?)
}

/// The definition name of a catalog kind, where a strategic merge starts its
/// walk (`("apps", "v1", "Deployment")` → `io.k8s.api.apps.v1.Deployment`).
pub fn root_type(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    catalog::by_kind(group, version, kind).map(|r| r.type_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_type(name: &str) -> String {
        format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}")
    }

    fn core_type(name: &str) -> String {
        format!("io.k8s.api.core.v1.{name}")
    }

    #[test]
    fn container_lists_merge_by_their_keys() {
        let spec = core_type("PodSpec");
        assert_eq!(patch_meta(&spec, "containers"), Some(BY_NAME));
        assert_eq!(
            patch_meta(&spec, "volumes"),
            Some(PatchMeta {
                strategy: Strategy::RetainKeysMerge,
                merge_key: Some("name")
            })
        );
        let container = core_type("Container");
        assert_eq!(
            patch_meta(&container, "ports").and_then(|m| m.merge_key),
            Some("containerPort")
        );
        assert_eq!(
            patch_meta(&container, "env").and_then(|m| m.merge_key),
            Some("name")
        );
        assert_eq!(
            patch_meta(&container, "volumeMounts").and_then(|m| m.merge_key),
            Some("mountPath")
        );
        assert_eq!(
            patch_meta(&core_type("ServiceSpec"), "ports").and_then(|m| m.merge_key),
            Some("port")
        );
        assert_eq!(
            patch_meta(&core_type("NodeStatus"), "conditions"),
            Some(BY_TYPE)
        );
        assert_eq!(
            patch_meta(&core_type("PodStatus"), "conditions"),
            Some(BY_TYPE)
        );
    }

    #[test]
    fn untagged_and_unknown_fields_have_no_directive() {
        assert_eq!(patch_meta(&core_type("PodSpec"), "tolerations"), None);
        assert_eq!(patch_meta(&core_type("PodSpec"), "nope"), None);
        assert_eq!(patch_meta("no.such.Type", "containers"), None);
    }

    #[test]
    fn object_meta_lists() {
        let meta = meta_type("ObjectMeta");
        assert_eq!(patch_meta(&meta, "finalizers"), Some(SET));
        assert_eq!(
            patch_meta(&meta, "ownerReferences").and_then(|m| m.merge_key),
            Some("uid")
        );
        assert_eq!(
            field_type(&meta, "ownerReferences"),
            Some("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference")
        );
    }

    #[test]
    fn walks_from_a_deployment_down_to_container_ports() {
        let root = root_type("apps", "v1", "Deployment").unwrap();
        assert_eq!(root, "io.k8s.api.apps.v1.Deployment");
        let path = ["spec", "template", "spec", "containers", "ports"];
        let mut current = root;
        let mut seen = Vec::new();
        for field in path {
            current = field_type(current, field)
                .unwrap_or_else(|| panic!("no type for {field} in {current}"));
            seen.push(current);
        }
        assert_eq!(
            seen,
            [
                "io.k8s.api.apps.v1.DeploymentSpec",
                "io.k8s.api.core.v1.PodTemplateSpec",
                "io.k8s.api.core.v1.PodSpec",
                "io.k8s.api.core.v1.Container",
                "io.k8s.api.core.v1.ContainerPort",
            ]
        );
        assert_eq!(
            field_type("io.k8s.api.apps.v1.Deployment", "metadata"),
            Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
    }

    #[test]
    fn scalar_and_unknown_fields_have_no_type() {
        assert_eq!(field_type(&core_type("PodSpec"), "nodeName"), None);
        assert_eq!(field_type(&core_type("PodSpec"), "nope"), None);
        assert_eq!(field_type("no.such.Type", "spec"), None);
        assert_eq!(root_type("apps", "v1", "Nope"), None);
        assert_eq!(root_type("", "v1", "Pod"), Some("io.k8s.api.core.v1.Pod"));
    }

    /// Guards the transcription: every entry names a real field of a real
    /// definition, list directives sit on arrays, and a merge key is a field
    /// of the element type.
    #[test]
    fn every_entry_names_a_real_field_and_key() {
        for (type_name, field, meta) in PATCH_META {
            let property = schemas::property(type_name, field)
                .unwrap_or_else(|| panic!("{type_name}.{field} is not in the schemas"));
            let is_array = property.get("type").and_then(|t| t.as_str()) == Some("array");
            match meta.strategy {
                Strategy::RetainKeys => assert!(!is_array, "{type_name}.{field}"),
                _ => assert!(is_array, "{type_name}.{field} is not a list"),
            }
            if let Some(key) = meta.merge_key {
                let element = field_type(type_name, field)
                    .unwrap_or_else(|| panic!("{type_name}.{field} has no element type"));
                assert!(
                    schemas::property(element, key).is_some(),
                    "{element} has no merge key {key}"
                );
            }
        }
    }

    #[test]
    fn no_duplicate_entries() {
        let mut keys: Vec<_> = PATCH_META.iter().map(|(t, f, _)| (*t, *f)).collect();
        let before = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), before);
    }
}
