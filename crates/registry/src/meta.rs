//! Reading and writing `metadata` fields of objects held as JSON.
//!
//! Upstream counterpart: `meta.Accessor` over `metav1.ObjectMeta`.

use serde_json::{Map, Value};

/// The `metadata` map of an object, created when absent.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("object");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("metadata object")
}

/// A string field of `metadata`, or "" when absent.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid")
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, finalizers: Vec<String>) {
    let meta = metadata_mut(obj);
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), Value::from(finalizers));
    }
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.pointer("/metadata/labels").and_then(Value::as_object)
}

pub fn set(obj: &mut Value, field: &str, value: impl Into<Value>) {
    metadata_mut(obj).insert(field.to_string(), value.into());
}

pub fn remove(obj: &mut Value, field: &str) {
    metadata_mut(obj).remove(field);
}

pub fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Everything but `metadata` and `status`: what a generation counts
/// changes of.
pub fn spec_equal(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(a) == strip(b)
}

/// Whether two objects are the same apart from their resourceVersion.
///
/// Compared in place: every update asks, and copying both objects to drop
/// one field from each showed in profiles of busy servers.
pub fn equal_ignoring_rv(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    const RV: &str = "resourceVersion";
    let same_meta = |x: &Value, y: &Value| match (x, y) {
        (Value::Object(x), Value::Object(y)) => {
            let len =
                |m: &serde_json::Map<String, Value>| m.len() - usize::from(m.contains_key(RV));
            len(x) == len(y)
                && x.iter()
                    .filter(|(k, _)| k.as_str() != RV)
                    .all(|(k, v)| y.get(k) == Some(v))
        }
        (x, y) => x == y,
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| match b.get(k) {
            Some(w) if k == "metadata" => same_meta(v, w),
            Some(w) => v == w,
            None => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_ignores_only_the_resource_version() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 1}});
        let same = json!({"spec": {"x": 1}, "metadata": {"resourceVersion": "2", "name": "a"}});
        let no_rv = json!({"metadata": {"name": "a"}, "spec": {"x": 1}});
        assert!(equal_ignoring_rv(&a, &same));
        assert!(equal_ignoring_rv(&a, &no_rv));
        assert!(equal_ignoring_rv(&no_rv, &a));
        for other in [
            json!({"metadata": {"name": "b", "resourceVersion": "1"}, "spec": {"x": 1}}),
            json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 2}}),
            json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"x": 1}}),
            json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}}),
            json!({"spec": {"x": 1}}),
            json!("a"),
        ] {
            assert!(!equal_ignoring_rv(&a, &other), "{other}");
            assert!(!equal_ignoring_rv(&other, &a), "{other}");
        }
        assert!(equal_ignoring_rv(
            &json!({"metadata": {"resourceVersion": "1"}}),
            &json!({"metadata": {}})
        ));
        assert!(!equal_ignoring_rv(&json!({"metadata": {}}), &json!({})));
        assert!(equal_ignoring_rv(&json!([1]), &json!([1])));
    }

    #[test]
    fn accessors_tolerate_missing_metadata() {
        let mut obj = json!({"kind": "ConfigMap"});
        assert_eq!(name(&obj), "");
        set(&mut obj, "name", "a");
        assert_eq!(name(&obj), "a");
        set_finalizers(&mut obj, vec!["x".into()]);
        assert_eq!(finalizers(&obj), vec!["x"]);
        set_finalizers(&mut obj, vec![]);
        assert!(obj.pointer("/metadata/finalizers").is_none());
    }

    #[test]
    fn spec_equality_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {}, "spec": {"x": 1}, "status": {"y": 2}});
        let c = json!({"metadata": {}, "spec": {"x": 2}});
        assert!(spec_equal(&a, &b));
        assert!(!spec_equal(&a, &c));
    }
}
