//! What a pod update may change: almost nothing of the spec.
//!
//! Upstream counterpart: `ValidatePodUpdate` in
//! `pkg/apis/core/validation/validation.go`. Like upstream, the mutable
//! fields of the new spec are overwritten with the old values and what is
//! left must equal the old spec; the mutable fields get their own rules.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

/// The sentence upstream's Forbidden error starts with.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Field errors of changing pod `old` into `new`.
pub fn validate_pod_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let spec_path = FieldPath::new("spec");
    let mut errs = Vec::new();
    let null = Value::Null;
    let new_spec = new.get("spec").unwrap_or(&null);
    let old_spec = old.get("spec").unwrap_or(&null);

    check_active_deadline(new_spec, old_spec, &spec_path, &mut errs);
    check_tolerations(
        new_spec,
        old_spec,
        &spec_path.child("tolerations"),
        &mut errs,
    );

    let mut munged = new_spec.clone();
    for key in ["containers", "initContainers"] {
        let old_list = old_spec.get(key).and_then(Value::as_array);
        let new_list = munged.get_mut(key).and_then(Value::as_array_mut);
        if let (Some(old_list), Some(new_list)) = (old_list, new_list) {
            // Only when the lists line up; otherwise the difference in
            // length is itself the forbidden change.
            if old_list.len() == new_list.len() {
                for (n, o) in new_list.iter_mut().zip(old_list) {
                    if let (Some(n), Some(img)) = (n.as_object_mut(), o.get("image")) {
                        n.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        for key in ["activeDeadlineSeconds", "tolerations"] {
            match old_spec.get(key) {
                Some(v) => {
                    m.insert(key.into(), v.clone());
                }
                None => {
                    m.remove(key);
                }
            }
        }
        let old_grace = old_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            m.insert("terminationGracePeriodSeconds".into(), old_grace.into());
        }
    }
    if munged != *old_spec {
        errs.push(FieldError::forbidden(&spec_path, POD_UPDATE_FORBIDDEN));
    }
    errs
}

fn check_active_deadline(new: &Value, old: &Value, spec: &FieldPath, errs: &mut Vec<FieldError>) {
    let path = spec.child("activeDeadlineSeconds");
    let old_v = old.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let new_v = new.get("activeDeadlineSeconds").filter(|v| !v.is_null());
    match (old_v, new_v) {
        (Some(_), None) => errs.push(FieldError::invalid(
            &path,
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n.as_i64().is_some_and(|n| n > o) => errs.push(FieldError::invalid(
            &path,
            n,
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
}

/// Existing tolerations stay; only their tolerationSeconds may change.
fn check_tolerations(new: &Value, old: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_list: Vec<Value> = crate::resources::util::items(new, "tolerations")
        .iter()
        .map(strip)
        .collect();
    for (i, t) in crate::resources::util::items(old, "tolerations")
        .iter()
        .enumerate()
    {
        if !new_list.contains(&strip(t)) {
            errs.push(FieldError::forbidden(
                &path.index(i),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
        }
    }
}
