//! Storage: StorageClasses (fixed once made), PersistentVolumes and
//! PersistentVolumeClaims (born Pending, a bound claim's spec frozen but
//! for its storage request).
//!
//! Upstream counterpart: `pkg/registry/storage/storageclass/strategy.go`,
//! `pkg/registry/core/persistentvolume{,claim}/strategy.go`, and
//! `ValidateStorageClass{,Update}`, `ValidatePersistentVolume{,Update}`,
//! `ValidatePersistentVolumeClaim{,Update}` with their defaults.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Value};

use crate::resources::util::{child, default, items, str_at};
use crate::strategy::copy_field;
use crate::Strategy;

/// StorageClasses (storage.k8s.io/v1).
pub struct StorageClassStrategy;

impl Strategy for StorageClassStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            default(map, "reclaimPolicy", "Delete");
            default(map, "volumeBindingMode", "Immediate");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        self.prepare_for_create(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if str_at(obj, "/provisioner").is_empty() {
            errs.push(FieldError::required(&FieldPath::new("provisioner"), ""));
        }
        let reclaim = str_at(obj, "/reclaimPolicy");
        if !reclaim.is_empty() && reclaim != "Delete" && reclaim != "Retain" {
            errs.push(FieldError::not_supported(
                &FieldPath::new("reclaimPolicy"),
                reclaim,
                &["Delete", "Retain"],
            ));
        }
        let mode = str_at(obj, "/volumeBindingMode");
        if !mode.is_empty() && mode != "Immediate" && mode != "WaitForFirstConsumer" {
            errs.push(FieldError::not_supported(
                &FieldPath::new("volumeBindingMode"),
                mode,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        for field in [
            "parameters",
            "provisioner",
            "reclaimPolicy",
            "volumeBindingMode",
        ] {
            let empty_map =
                |v: Option<&Value>| v.is_none_or(|v| v.as_object().is_some_and(|m| m.is_empty()));
            let same = new.get(field) == old.get(field)
                || (field == "parameters"
                    && empty_map(new.get(field))
                    && empty_map(old.get(field)));
            if !same {
                errs.push(FieldError::forbidden(
                    &FieldPath::new(field),
                    format!("updates to {field} are forbidden."),
                ));
            }
        }
        errs
    }
}

/// The fields of a PersistentVolumeSpec that are not the volume source.
const PV_SPEC_FIELDS: &[&str] = &[
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeMode",
    "volumeAttributesClassName",
];

/// The volume source of a PV spec: everything else.
fn pv_source(spec: &Value) -> Value {
    let mut source = spec.clone();
    if let Some(map) = source.as_object_mut() {
        for f in PV_SPEC_FIELDS {
            map.remove(*f);
        }
    }
    source
}

fn check_access_modes(spec: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    const MODES: [&str; 4] = [
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    let modes = items(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(
            &path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !MODES.contains(&m) {
            errs.push(FieldError::not_supported(
                &path.child("accessModes"),
                m,
                &MODES,
            ));
        }
    }
}

/// A PV or PVC is born Pending, whatever the request said.
fn born_pending(obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), json!({"phase": "Pending"}));
    }
}

/// PersistentVolumes (core/v1).
pub struct PersistentVolumeStrategy;

impl PersistentVolumeStrategy {
    fn defaults(obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            let spec = child(map, "spec");
            default(spec, "persistentVolumeReclaimPolicy", "Retain");
            default(spec, "volumeMode", "Filesystem");
        }
    }
}

impl Strategy for PersistentVolumeStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        Self::defaults(obj);
        born_pending(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        Self::defaults(new);
        copy_field(new, old, "status");
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let path = FieldPath::new("spec");
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        check_access_modes(&spec, &path, &mut errs);
        if spec.pointer("/capacity/storage").is_none() {
            errs.push(FieldError::required(&path.child("capacity"), ""));
        }
        let sources = pv_source(&spec).as_object().map_or(0, |m| m.len());
        if sources == 0 {
            errs.push(FieldError::required(&path, "must specify a volume type"));
        } else if sources > 1 {
            errs.push(FieldError::forbidden(
                &path,
                "may not specify more than 1 volume type",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let null = Value::Null;
        let (new_spec, old_spec) = (
            new.get("spec").unwrap_or(&null),
            old.get("spec").unwrap_or(&null),
        );
        if pv_source(new_spec) != pv_source(old_spec) {
            errs.push(FieldError::forbidden(
                &FieldPath::new("spec").child("persistentvolumesource"),
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        if new_spec.get("volumeMode") != old_spec.get("volumeMode") {
            errs.push(FieldError::invalid(
                &FieldPath::new("spec").child("volumeMode"),
                new_spec.get("volumeMode").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        errs
    }
}

/// PersistentVolumeClaims (core/v1).
pub struct PersistentVolumeClaimStrategy;

/// Upstream's words for a forbidden claim spec change.
pub const PVC_SPEC_IMMUTABLE: &str = "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

impl PersistentVolumeClaimStrategy {
    fn defaults(obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            default(child(map, "spec"), "volumeMode", "Filesystem");
        }
    }
}

impl Strategy for PersistentVolumeClaimStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        Self::defaults(obj);
        born_pending(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        Self::defaults(new);
        copy_field(new, old, "status");
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let path = FieldPath::new("spec");
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        check_access_modes(&spec, &path, &mut errs);
        if spec.pointer("/resources/requests/storage").is_none() {
            errs.push(FieldError::required(
                &path.child("resources").key("storage"),
                "",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let null = Value::Null;
        let old_spec = old.get("spec").unwrap_or(&null);
        let mut munged = new.get("spec").cloned().unwrap_or(Value::Null);
        let bound = str_at(old, "/status/phase") == "Bound";
        if let Some(m) = munged.as_object_mut() {
            // The binder sets volumeName once; a bound claim may grow.
            if str_at(old, "/spec/volumeName").is_empty() {
                m.remove("volumeName");
            }
            let mut keep_old = vec!["volumeAttributesClassName"];
            if bound {
                keep_old.push("resources");
            }
            for f in keep_old {
                match old_spec.get(f) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
        }
        let mut old_cmp = old_spec.clone();
        if str_at(old, "/spec/volumeName").is_empty() {
            if let Some(m) = old_cmp.as_object_mut() {
                m.remove("volumeName");
            }
        }
        if munged != old_cmp {
            errs.push(FieldError::forbidden(
                &FieldPath::new("spec"),
                PVC_SPEC_IMMUTABLE,
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn storage_classes_are_fixed_once_made() {
        let mut sc = json!({"metadata": {"name": "fast"}, "provisioner": "example.com/x",
                            "parameters": {"type": "ssd"}});
        StorageClassStrategy.prepare_for_create(&mut sc);
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        let mut changed = sc.clone();
        changed["parameters"]["type"] = json!("hdd");
        assert_eq!(
            messages(&StorageClassStrategy.validate_update(&changed, &sc)),
            ["parameters: Forbidden: updates to parameters are forbidden."]
        );
        let mut labelled = sc.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(StorageClassStrategy
            .validate_update(&labelled, &sc)
            .is_empty());
    }

    #[test]
    fn volumes_are_born_pending_with_defaults_and_a_fixed_source() {
        let mut pv = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                     "hostPath": {"path": "/data"}}, "status": {"phase": "Bound"}});
        PersistentVolumeStrategy.prepare_for_create(&mut pv);
        assert_eq!(pv["status"]["phase"], "Pending");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert!(PersistentVolumeStrategy.validate(&pv).is_empty());
        let mut moved = pv.clone();
        moved["spec"]["hostPath"]["path"] = json!("/other");
        assert_eq!(
            messages(&PersistentVolumeStrategy.validate_update(&moved, &pv)),
            ["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]
        );
        let none =
            json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            messages(&PersistentVolumeStrategy.validate(&none)),
            ["spec: Required value: must specify a volume type"]
        );
    }

    #[test]
    fn bound_claims_may_only_grow() {
        let mut pvc = json!({"spec": {"accessModes": ["ReadWriteOnce"],
                                      "resources": {"requests": {"storage": "1Gi"}}}});
        PersistentVolumeClaimStrategy.prepare_for_create(&mut pvc);
        assert_eq!(pvc["status"]["phase"], "Pending");
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        // The binder names the volume once.
        let mut named = pvc.clone();
        named["spec"]["volumeName"] = json!("pv-1");
        assert!(PersistentVolumeClaimStrategy
            .validate_update(&named, &pvc)
            .is_empty());
        // Unbound: the request is fixed; bound: it may change.
        let mut grown = named.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            messages(&PersistentVolumeClaimStrategy.validate_update(&grown, &named)),
            [format!("spec: Forbidden: {PVC_SPEC_IMMUTABLE}")]
        );
        let mut bound = named.clone();
        bound["status"]["phase"] = json!("Bound");
        assert!(PersistentVolumeClaimStrategy
            .validate_update(&grown, &bound)
            .is_empty());
        let mut renamed = bound.clone();
        renamed["spec"]["volumeName"] = json!("pv-2");
        assert_eq!(
            PersistentVolumeClaimStrategy
                .validate_update(&renamed, &bound)
                .len(),
            1
        );
    }
}
