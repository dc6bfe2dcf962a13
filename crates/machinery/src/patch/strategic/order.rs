//! Element order of merged lists.
//!
//! Upstream counterpart: `normalizeElementOrder`, `mergeSortedSlice` and the
//! `$setElementOrder` handling in `strategicpatch/patch.go`, following the
//! "preserve order in strategic merge patch" design: items named by the
//! patch keep the patch's relative order, items only the server has keep
//! the live order, and the two are interleaved by the live positions.

use serde_json::Value;

/// Scalar equality with Go's `interface{}` semantics over decoded JSON,
/// where every number is a float64: `1` equals `1.0`.
pub(super) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The identity of a list element: its merge key value for objects, the
/// element itself for scalars.
pub(super) fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => item.as_object().and_then(|m| m.get(k)),
        None => Some(item),
    }
}

/// Position of `item` in `list`, comparing identities.
fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter()
        .position(|v| identity(v, key).is_some_and(|other| same(id, other)))
}

/// Whether `item` occurs in `list` (by identity).
pub(super) fn contains(list: &[Value], item: &Value, key: Option<&str>) -> bool {
    position(list, item, key).is_some()
}

/// Stable sort by position in `order`; items absent from it go last.
fn sort_by_order(items: &mut [Value], order: &[Value], key: Option<&str>) {
    items.sort_by_cached_key(|v| position(order, v, key).unwrap_or(usize::MAX));
}

/// Orders a merged list: `patch_items` by `patch_order`, `server_only` by
/// `server_order`, then interleaves them: a server-only item goes before a
/// patch item only when both appear in `server_order` and it comes first
/// there; otherwise the patch item wins the slot.
pub(super) fn normalize(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    sort_by_order(&mut patch_items, patch_order, key);
    sort_by_order(&mut server_only, server_order, key);
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, key), position(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Splits `merged` into the items present in `by` and the rest.
pub(super) fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| contains(by, v, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vals(v: Value) -> Vec<Value> {
        v.as_array().unwrap().clone()
    }

    #[test]
    fn scalars_interleave_by_live_order() {
        // live [a b c d], patch touches [d b]: patch items keep the patch's
        // order; a server-only item is placed before a patch item only when
        // it comes first in the live list.
        let live = vals(json!(["a", "b", "c", "d"]));
        let patch = vals(json!(["d", "b"]));
        let (p, s) = partition(live.clone(), &patch, None);
        assert_eq!(
            normalize(p, s, &patch, &live, None),
            vals(json!(["a", "c", "d", "b"]))
        );
    }

    #[test]
    fn new_items_come_after_earlier_server_items() {
        let live = vals(json!([{"name": "a"}, {"name": "b"}]));
        let merged = vals(json!([{"name": "a"}, {"name": "b"}, {"name": "z"}]));
        let patch = vals(json!([{"name": "z"}]));
        let (p, s) = partition(merged, &patch, Some("name"));
        assert_eq!(
            normalize(p, s, &patch, &live, Some("name")),
            vals(json!([{"name": "z"}, {"name": "a"}, {"name": "b"}]))
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(&json!(80), &json!(80.0)));
        assert!(!same(&json!(80), &json!("80")));
        assert!(contains(
            &vals(json!([{"p": 80.0}])),
            &json!({"p": 80}),
            Some("p")
        ));
        assert!(!contains(
            &vals(json!([{"q": 80}])),
            &json!({"p": 80}),
            Some("p")
        ));
    }
}
