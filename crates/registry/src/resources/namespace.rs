//! Namespaces: born Active with the `kubernetes` finalizer; deleting one
//! makes it Terminating until the namespace controller has emptied it and
//! removed the finalizer through `/finalize`.
//!
//! Upstream counterpart: `pkg/registry/core/namespace/strategy.go` and the
//! namespace REST storage's Delete.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Value};

use crate::strategy::copy_field;
use crate::Strategy;

pub const KUBERNETES_FINALIZER: &str = "kubernetes";

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let spec = map.entry("spec").or_insert_with(|| json!({}));
        let finalizers = spec
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
            let mut finalizers = finalizers;
            finalizers.push(KUBERNETES_FINALIZER.into());
            spec["finalizers"] = Value::from(finalizers);
        }
        map.insert("status".into(), json!({"phase": "Active"}));
        // The name is the namespace's own label, as upstream sets it.
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(name) = name {
            let meta = crate::meta::metadata_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), name.into());
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers changes only through /finalize, status through
        // /status.
        copy_field(new, old, "status");
        let old_finalizers = old.pointer("/spec/finalizers").cloned();
        if let Some(map) = new.as_object_mut() {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            match old_finalizers {
                Some(f) => spec["finalizers"] = f,
                None => {
                    if let Some(s) = spec.as_object_mut() {
                        s.remove("finalizers");
                    }
                }
            }
        }
        let name = crate::meta::name(old).to_string();
        let meta = crate::meta::metadata_mut(new);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), name.into());
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(fins) = obj.pointer("/spec/finalizers").and_then(Value::as_array) {
            for (i, f) in fins.iter().enumerate() {
                if f.as_str().is_none_or(str::is_empty) {
                    let path = FieldPath::new("spec").child("finalizers").index(i);
                    errs.push(FieldError::required(&path, ""));
                }
            }
        }
        errs
    }

    fn prepare_for_delete(&self, obj: &mut Value) -> bool {
        obj["status"] = json!({"phase": "Terminating"});
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    }

    fn blocks_deletion(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    }
}
