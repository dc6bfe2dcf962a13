//! The CSI objects of storage.k8s.io: CSIDrivers (what a driver needs
//! from Kubernetes), CSINodes (the drivers on a node) and
//! VolumeAttachments (a volume attached to a node; status subresource).
//!
//! Upstream counterpart: `pkg/registry/storage/{csidriver,csinode,
//! volumeattachment}/strategy.go`, `SetDefaults_CSIDriver` in
//! `pkg/apis/storage/v1/defaults.go` and `pkg/apis/storage/validation`.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Value};

use crate::resources::util::{child, default, items, str_at};
use crate::strategy::copy_field;
use crate::Strategy;

const LIFECYCLE_MODES: [&str; 2] = ["Persistent", "Ephemeral"];
const FS_GROUP_POLICIES: [&str; 3] = ["ReadWriteOnceWithFSType", "File", "None"];
const MAX_NODE_ID: usize = 256;

pub struct CsiDriverStrategy;

fn default_csi_driver(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let spec = child(map, "spec");
    default(spec, "attachRequired", true);
    default(spec, "podInfoOnMount", false);
    default(spec, "storageCapacity", false);
    default(spec, "fsGroupPolicy", "ReadWriteOnceWithFSType");
    default(spec, "requiresRepublish", false);
    default(spec, "seLinuxMount", false);
    default(spec, "volumeLifecycleModes", json!(["Persistent"]));
}

impl Strategy for CsiDriverStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        default_csi_driver(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_csi_driver(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = FieldPath::new("spec");
        for (i, mode) in items(
            obj.get("spec").unwrap_or(&Value::Null),
            "volumeLifecycleModes",
        )
        .iter()
        .enumerate()
        {
            let mode = mode.as_str().unwrap_or_default();
            if !LIFECYCLE_MODES.contains(&mode) {
                errs.push(FieldError::not_supported(
                    &spec.child("volumeLifecycleModes").index(i),
                    mode,
                    &LIFECYCLE_MODES,
                ));
            }
        }
        let policy = str_at(obj, "/spec/fsGroupPolicy");
        if !policy.is_empty() && !FS_GROUP_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                &spec.child("fsGroupPolicy"),
                policy,
                &FS_GROUP_POLICIES,
            ));
        }
        for (i, t) in items(obj.get("spec").unwrap_or(&Value::Null), "tokenRequests")
            .iter()
            .enumerate()
        {
            if let Some(secs) = t.get("expirationSeconds").and_then(Value::as_i64) {
                if secs < 600 {
                    errs.push(FieldError::invalid(
                        &spec
                            .child("tokenRequests")
                            .index(i)
                            .child("expirationSeconds"),
                        secs,
                        "may not specify a duration less than 10 minutes",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let spec = FieldPath::new("spec");
        for field in ["attachRequired", "volumeLifecycleModes"] {
            let (n, o) = (
                new.pointer(&format!("/spec/{field}")),
                old.pointer(&format!("/spec/{field}")),
            );
            if n != o {
                errs.push(FieldError::invalid(
                    &spec.child(field),
                    n.unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
        }
        errs
    }
}

pub struct CsiNodeStrategy;

impl Strategy for CsiNodeStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let path = FieldPath::new("spec").child("drivers");
        let mut names: Vec<&str> = Vec::new();
        for (i, d) in items(obj.get("spec").unwrap_or(&Value::Null), "drivers")
            .iter()
            .enumerate()
        {
            let dp = path.index(i);
            let name = str_at(d, "/name");
            if name.is_empty() {
                errs.push(FieldError::required(&dp.child("name"), ""));
            } else if names.contains(&name) {
                errs.push(FieldError::duplicate(&dp.child("name"), name));
            }
            names.push(name);
            let node_id = str_at(d, "/nodeID");
            if node_id.is_empty() {
                errs.push(FieldError::required(&dp.child("nodeID"), ""));
            } else if node_id.len() > MAX_NODE_ID {
                errs.push(FieldError::invalid(
                    &dp.child("nodeID"),
                    node_id,
                    format!("must be {MAX_NODE_ID} characters or less"),
                ));
            }
            if let Some(count) = d.pointer("/allocatable/count").and_then(Value::as_i64) {
                if count < 0 {
                    errs.push(FieldError::invalid(
                        &dp.child("allocatable").child("count"),
                        count,
                        "must be greater than or equal to 0",
                    ));
                }
            }
            let mut keys: Vec<&str> = Vec::new();
            for (j, k) in items(d, "topologyKeys").iter().enumerate() {
                let k = k.as_str().unwrap_or_default();
                if keys.contains(&k) {
                    errs.push(FieldError::duplicate(&dp.child("topologyKeys").index(j), k));
                }
                keys.push(k);
            }
        }
        errs
    }
}

pub struct VolumeAttachmentStrategy;

impl Strategy for VolumeAttachmentStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        copy_field(new, old, "status");
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = FieldPath::new("spec");
        if str_at(obj, "/spec/attacher").is_empty() {
            errs.push(FieldError::required(&spec.child("attacher"), ""));
        }
        if str_at(obj, "/spec/nodeName").is_empty() {
            errs.push(FieldError::required(&spec.child("nodeName"), ""));
        }
        let source = spec.child("source");
        let pv = obj.pointer("/spec/source/persistentVolumeName");
        let inline = obj
            .pointer("/spec/source/inlineVolumeSpec")
            .filter(|v| !v.is_null());
        const ONE: &str = "must specify exactly one of inlineVolumeSpec and persistentVolumeName";
        match (pv.filter(|v| !v.is_null()), inline) {
            (None, None) => errs.push(FieldError::required(&source, ONE)),
            (Some(_), Some(_)) => errs.push(FieldError::forbidden(&source, ONE)),
            (Some(name), None) if name.as_str().unwrap_or_default().is_empty() => {
                errs.push(FieldError::required(
                    &source.child("persistentVolumeName"),
                    "must specify non empty persistentVolumeName",
                ))
            }
            _ => {}
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.get("spec") != old.get("spec") {
            errs.push(FieldError::invalid(
                &FieldPath::new("spec"),
                new.get("spec").unwrap_or(&Value::Null),
                "field is immutable",
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
    fn csi_driver_defaults_and_immutable_attach() {
        let mut d = json!({"metadata": {"name": "d.example.com"}, "spec": {}});
        CsiDriverStrategy.prepare_for_create(&mut d);
        assert_eq!(
            d["spec"],
            json!({"attachRequired": true, "podInfoOnMount": false, "storageCapacity": false,
                   "fsGroupPolicy": "ReadWriteOnceWithFSType", "requiresRepublish": false,
                   "seLinuxMount": false, "volumeLifecycleModes": ["Persistent"]})
        );
        let mut changed = d.clone();
        changed["spec"]["attachRequired"] = json!(false);
        assert_eq!(
            messages(&CsiDriverStrategy.validate_update(&changed, &d)),
            ["spec.attachRequired: Invalid value: false: field is immutable"]
        );
    }

    #[test]
    fn csi_node_and_attachment_rules() {
        let node = json!({"spec": {"drivers": [{"name": "a", "nodeID": "n"}, {"name": "a"}]}});
        assert_eq!(
            messages(&CsiNodeStrategy.validate(&node)),
            [
                r#"spec.drivers[1].name: Duplicate value: "a""#,
                "spec.drivers[1].nodeID: Required value"
            ]
        );
        let va = json!({"spec": {"attacher": "a", "nodeName": "n", "source": {}}});
        assert_eq!(
            messages(&VolumeAttachmentStrategy.validate(&va)),
            ["spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"]
        );
        let ok = json!({"spec": {"attacher": "a", "nodeName": "n", "source": {"persistentVolumeName": "pv"}}});
        assert!(VolumeAttachmentStrategy.validate(&ok).is_empty());
        let mut moved = ok.clone();
        moved["spec"]["nodeName"] = json!("m");
        assert!(
            messages(&VolumeAttachmentStrategy.validate_update(&moved, &ok))[0]
                .ends_with("field is immutable")
        );
    }
}
