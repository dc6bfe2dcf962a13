//! JSON merge patch (RFC 7386): apply, and create from two documents.
//!
//! Upstream counterpart: `jsonpatch.MergePatch` / `CreateMergePatch` from
//! `github.com/evanphx/json-patch`, which kube-apiserver uses for
//! `application/merge-patch+json` and for custom resources. Objects merge
//! key by key, `null` deletes, everything else (lists included) replaces.

use serde_json::{Map, Value};

/// Applies `patch` to `target` (RFC 7386 section 2). Never fails: any JSON
/// is a valid merge patch. A non-object patch replaces the target whole.
pub fn apply(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        // A non-object target is discarded, as the RFC says.
        _ => Map::new(),
    };
    merge_into(&mut out, p);
    Value::Object(out)
}

/// Merges patch object `p` into `out` in place. The target is cloned once,
/// at the top: merging each patched subtree into a fresh copy of itself
/// cloned every patched object twice (a pod status patch clones the whole
/// status again), which showed in profiles of the kubelets' writes.
fn merge_into(out: &mut Map<String, Value>, p: &Map<String, Value>) {
    for (k, v) in p {
        match v {
            Value::Null => {
                super::remove_key(out, k);
            }
            Value::Object(pv) => match out.get_mut(k) {
                Some(Value::Object(t)) => merge_into(t, pv),
                _ => {
                    let mut fresh = Map::new();
                    merge_into(&mut fresh, pv);
                    out.insert(k.clone(), Value::Object(fresh));
                }
            },
            other => {
                out.insert(k.clone(), other.clone());
            }
        }
    }
}

/// The merge patch that turns `original` into `modified`: removed keys
/// become `null`, changed objects recurse, anything else is replaced. An
/// empty object means "no change".
///
/// A `null` inside `modified` cannot be expressed in a merge patch (it
/// would read as a deletion); such keys come out deleted after applying.
pub fn create(original: &Value, modified: &Value) -> Value {
    match (original, modified) {
        (Value::Object(o), Value::Object(m)) => {
            let mut patch = Map::new();
            for k in o.keys() {
                if !m.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            for (k, mv) in m {
                match o.get(k) {
                    Some(ov) if ov == mv => {}
                    Some(ov @ Value::Object(_)) if mv.is_object() => {
                        patch.insert(k.clone(), create(ov, mv));
                    }
                    _ => {
                        patch.insert(k.clone(), mv.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => modified.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7386 appendix A.
    #[test]
    fn rfc7386_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(apply(&target, &patch), want, "{target} + {patch}");
        }
    }

    #[test]
    fn patches_an_object() {
        let pod = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
                         "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}},
                           "spec": {"containers": [{"name": "c", "image": "y"}]}});
        assert_eq!(
            apply(&pod, &patch),
            json!({"metadata": {"name": "p", "labels": {"b": "2", "c": "3"}},
                   "spec": {"containers": [{"name": "c", "image": "y"}]}})
        );
    }

    #[test]
    fn create_round_trips() {
        let pairs = [
            (
                json!({"a": 1, "b": {"c": 2, "d": 3}}),
                json!({"a": 1, "b": {"c": 5}, "e": [1]}),
            ),
            (json!({"a": 1}), json!({"a": 1})),
            (json!({"a": {"b": 1}}), json!({"a": "flat"})),
            (json!({"a": "flat"}), json!({"a": {"b": 1}})),
            (json!({}), json!({"x": {"y": {"z": true}}})),
            (json!({"l": [1, 2, 3]}), json!({"l": [3]})),
            (json!([1]), json!({"a": 1})),
        ];
        for (o, m) in pairs {
            let p = create(&o, &m);
            assert_eq!(apply(&o, &p), m, "{o} -> {m} via {p}");
        }
        assert_eq!(
            create(
                &json!({"a": 1, "b": {"c": 2, "d": 3}}),
                &json!({"a": 1, "b": {"c": 5}})
            ),
            json!({"b": {"c": 5, "d": null}})
        );
        assert_eq!(create(&json!({"a": 1}), &json!({"a": 1})), json!({}));
    }
}
