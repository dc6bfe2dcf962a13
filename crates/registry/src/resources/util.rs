//! Small helpers for defaulting and validating objects held as JSON, so
//! the strategies read like upstream's typed code (`if x == nil { x = .. }`).

use serde_json::{Map, Value};

/// The map under `key`, created (or replaced, when it is not a map) as `{}`.
pub fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

/// Set `key` to `value` when it is absent or null (a Go nil pointer).
pub fn default(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value.into());
        }
    }
}

/// Set `key` to `value` when it is absent, null or "" (a Go zero string).
pub fn default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if str_field(map, key).is_empty() {
        map.insert(key.to_string(), value.into());
    }
}

/// A string field, "" when absent or not a string.
pub fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A string at a JSON pointer, "" when absent.
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The maps of the list under `key` (list items that are not maps are
/// skipped).
pub fn items_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The elements of the list at `v[key]`, empty when absent.
pub fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
