//! StorageObjectInUseProtection: new PersistentVolumeClaims get the
//! `kubernetes.io/pvc-protection` finalizer and new PersistentVolumes
//! `kubernetes.io/pv-protection`, so deleting one still in use only marks
//! it Terminating; the pvc-protection and pv-protection controllers remove
//! the finalizer once nothing uses the object.
//!
//! Upstream counterpart: `plugin/pkg/admission/storage/storageobjectinuseprotection`
//! (a mutating plugin on create; it adds the finalizer once).

use serde_json::Value;

pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Add `finalizer` to a new object's metadata.finalizers unless present.
pub fn protect(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let Some(items) = list.as_array_mut() else {
        // Not a list: validation rejects the object with a clear error.
        return;
    };
    if !items.iter().any(|f| f.as_str() == Some(finalizer)) {
        items.push(Value::String(finalizer.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_finalizer_is_added_once_and_others_kept() {
        let mut o = json!({"metadata": {"name": "c"}});
        protect(&mut o, PVC_FINALIZER);
        assert_eq!(o["metadata"]["finalizers"], json!([PVC_FINALIZER]));
        protect(&mut o, PVC_FINALIZER);
        assert_eq!(o["metadata"]["finalizers"], json!([PVC_FINALIZER]));

        let mut o = json!({"metadata": {"name": "v", "finalizers": ["example.com/x"]}});
        protect(&mut o, PV_FINALIZER);
        assert_eq!(
            o["metadata"]["finalizers"],
            json!(["example.com/x", PV_FINALIZER])
        );
        let mut o = json!({"metadata": {"finalizers": null}});
        protect(&mut o, PV_FINALIZER);
        assert_eq!(o["metadata"]["finalizers"], json!([PV_FINALIZER]));
        // No metadata: nothing to do, no panic.
        let mut o = json!("x");
        protect(&mut o, PV_FINALIZER);
    }
}
