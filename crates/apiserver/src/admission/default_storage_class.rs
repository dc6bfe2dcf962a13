//! DefaultStorageClass: a new PersistentVolumeClaim that names no class
//! gets the cluster's default StorageClass, so claims written for "the
//! default storage" (StatefulSets' volumeClaimTemplates, charts) are
//! provisioned by it — on rkube, the `local-path` class the server makes.
//!
//! Upstream counterpart: `plugin/pkg/admission/storage/storageclass/setdefault`
//! with `pkg/volume/util`'s `GetDefaultClass`. As there, only a claim
//! whose `spec.storageClassName` is absent (or null) is touched — `""`
//! means "no class" and stays — and neither is one with the old
//! `volume.beta.kubernetes.io/storage-class` annotation. The default is a
//! class annotated `storageclass.kubernetes.io/is-default-class: "true"`
//! (or the beta annotation); when several are, the newest wins, then the
//! first by name, as upstream since 1.26. No default: the claim is left
//! alone.

use std::borrow::Borrow;
use std::sync::Arc;

use serde_json::Value;

use super::lister::{self, Lister};

pub const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")?.get(key)?.as_str()
}

fn is_default(class: &Value) -> bool {
    annotation(class, DEFAULT_ANNOTATION) == Some("true")
        || annotation(class, BETA_DEFAULT_ANNOTATION) == Some("true")
}

/// The default class's name among `classes`: the newest marked default,
/// the first by name among equally new ones.
pub fn default_class<V: Borrow<Value>>(classes: &[V]) -> Option<&str> {
    let field = |c: &'_ Value, p: &str| -> String {
        c.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    classes
        .iter()
        .map(Borrow::borrow)
        .filter(|c| is_default(c))
        .max_by(|a, b| {
            let (ta, tb) = (
                field(a, "/metadata/creationTimestamp"),
                field(b, "/metadata/creationTimestamp"),
            );
            // RFC 3339 in UTC, one format: text order is time order.
            ta.cmp(&tb)
                .then_with(|| field(b, "/metadata/name").cmp(&field(a, "/metadata/name")))
        })
        .and_then(|c| c.pointer("/metadata/name"))
        .and_then(Value::as_str)
}

/// Whether admission should pick a class for this new claim.
pub fn wants_default(claim: &Value) -> bool {
    let named = claim
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null());
    !named && annotation(claim, BETA_CLASS_ANNOTATION).is_none()
}

/// Set the default class on `claim` if it names none; `classes` are the
/// cluster's StorageClasses.
pub fn set_default<V: Borrow<Value>>(claim: &mut Value, classes: &[V]) {
    if !wants_default(claim) {
        return;
    }
    let Some(name) = default_class(classes) else {
        return;
    };
    if let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("storageClassName".into(), Value::String(name.to_string()));
    }
}

/// The plugin over the cached StorageClasses.
pub async fn admit(claim: &mut Value, classes: &Arc<Lister>) -> Result<(), lister::Error> {
    if !wants_default(claim) {
        return Ok(());
    }
    let all = classes.under("").await?;
    set_default(claim, &all);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, created: &str, default: Option<&str>) -> Value {
        let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}});
        if let Some(d) = default {
            c["metadata"]["annotations"] = json!({ DEFAULT_ANNOTATION: d });
        }
        c
    }

    #[test]
    fn a_claim_without_a_class_gets_the_newest_default() {
        let classes = vec![
            class("fast", "2026-01-02T00:00:00Z", None),
            class("local-path", "2026-01-01T00:00:00Z", Some("true")),
            class("off", "2026-01-03T00:00:00Z", Some("false")),
        ];
        let mut c =
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
        set_default(&mut c, &classes);
        assert_eq!(c["spec"]["storageClassName"], "local-path");
        // Null counts as absent.
        let mut null = json!({"spec": {"storageClassName": null}});
        set_default(&mut null, &classes);
        assert_eq!(null["spec"]["storageClassName"], "local-path");

        let mut two = classes.clone();
        two.push(class("newer", "2026-02-01T00:00:00Z", Some("true")));
        two.push(class("also-new", "2026-02-01T00:00:00Z", Some("true")));
        assert_eq!(default_class(&two), Some("also-new"));
        // The beta annotation marks a default too.
        let beta = json!({"metadata": {"name": "old", "creationTimestamp": "2027-01-01T00:00:00Z",
            "annotations": { BETA_DEFAULT_ANNOTATION: "true" }}});
        two.push(beta);
        assert_eq!(default_class(&two), Some("old"));
    }

    #[test]
    fn named_empty_or_annotated_classes_and_no_default_leave_the_claim() {
        let classes = vec![class("local-path", "2026-01-01T00:00:00Z", Some("true"))];
        for spec in [
            json!({"spec": {"storageClassName": ""}}),
            json!({"spec": {"storageClassName": "manual"}}),
            json!({"metadata": {"annotations": { BETA_CLASS_ANNOTATION: "x" }}, "spec": {}}),
        ] {
            let mut c = spec.clone();
            set_default(&mut c, &classes);
            assert_eq!(c, spec);
        }
        let mut c = json!({"spec": {}});
        set_default(&mut c, &[class("plain", "2026-01-01T00:00:00Z", None)]);
        assert_eq!(c, json!({"spec": {}}));
    }
}
