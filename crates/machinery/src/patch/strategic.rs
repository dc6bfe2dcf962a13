//! Strategic merge patch: apply, as kube-apiserver applies
//! `application/strategic-merge-patch+json` (what `kubectl apply` and
//! `kubectl patch` send by default).
//!
//! Upstream counterpart: `StrategicMergeMapPatch` in
//! `k8s.io/apimachinery/pkg/util/strategicpatch/patch.go` (the apply half;
//! creating patches is kubectl's job). Like a JSON merge patch, objects
//! merge and `null` deletes; unlike it, lists with metadata merge: lists of
//! objects by a merge key, lists of scalars as sets. Directives:
//!
//! - `$patch: replace` in an object replaces it; as a list element it makes
//!   the patch list replace the live list.
//! - `$patch: delete` in an object clears it; as a list element
//!   (`{"name": "x", "$patch": "delete"}`) it removes the matching element.
//! - `$patch: merge` in an object is the default spelled out; upstream
//!   rejects it as an unknown patch type, we accept it since it changes
//!   nothing. In a list it is refused, as upstream refuses it.
//! - `$retainKeys: [...]` drops live keys not listed.
//! - `$setElementOrder/<list>: [...]` fixes the final order of a merged list.
//! - `$deleteFromPrimitiveList/<list>: [...]` removes scalars from a set list.
//!
//! Where upstream inserts a patch value verbatim (a field absent from the
//! live object, a value of another type, a `$patch: replace`), we still
//! process it against an empty value, so no directive or `null` ever lands
//! in a stored object. Deleting from a primitive list that does not exist
//! is a no-op (upstream would store the deletion list itself).
//!
//! Element order follows upstream's rules (see `order`). Upstream's own
//! results differ in a few three-way cases that mix deletions, additions
//! and server-only items, because its order reference is a Go slice that
//! the merge rewrites in place depending on spare capacity; we order by
//! the live list as it was, which is what its design describes.

mod order;
pub mod schema;

use serde_json::{Map, Value};

pub use schema::{FieldMeta, ListStrategy, NoSchema, PatchSchema, SchemaError, SchemaTable};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch could not be applied. The first group are
/// malformed requests (400 upstream), the rest conflicts between patch and
/// object (upstream passes them on as 422/500).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid JSON document")]
    NotAnObject,
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownDirective { directive: String, map: String },
    #[error("merging lists cannot yet be specified in the patch")]
    ListMergeDirective,
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    #[error("cannot merge lists without merge key for {field}")]
    ObjectsWithoutMergeKey { field: String },
    #[error("lists of lists are not supported")]
    ListOfLists,
    #[error("list element types are not identical: {0}")]
    MixedList(String),
    #[error("the order in patch list {patch} doesn't match $setElementOrder list {order}")]
    OrderMismatch { patch: String, order: String },
}

impl Error {
    /// Whether the request itself is malformed (HTTP 400) rather than
    /// unappliable to this object.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Error::NotAnObject
                | Error::BadRetainKeys
                | Error::BadPrimitiveList
                | Error::BadSetElementOrder
        )
    }
}

/// Applies `patch` to `original`, both JSON objects, with list and object
/// strategies from `schema`.
pub fn apply(original: &Value, patch: &Value, schema: &dyn PatchSchema) -> Result<Value, Error> {
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        return Err(Error::NotAnObject);
    };
    let mut m = Merger {
        schema,
        path: Vec::new(),
    };
    m.merge_map(o.clone(), p.clone()).map(Value::Object)
}

struct Merger<'a> {
    schema: &'a dyn PatchSchema,
    /// Field names from the root to the map being merged.
    path: Vec<String>,
}

impl Merger<'_> {
    fn meta(&self, field: &str) -> FieldMeta {
        let mut p: Vec<&str> = self.path.iter().map(String::as_str).collect();
        p.push(field);
        self.schema.field(&p)
    }

    fn dotted(&self, field: &str) -> String {
        let mut p = self.path.clone();
        p.push(field.to_owned());
        p.join(".")
    }

    /// Runs `f` with `field` pushed onto the current path.
    fn within<T>(&mut self, field: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(field.to_owned());
        let out = f(self);
        self.path.pop();
        out
    }

    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
        if let Some(d) = patch.remove(DIRECTIVE) {
            match d.as_str() {
                Some("replace") => return self.merge_map(Map::new(), patch),
                Some("delete") => return Ok(Map::new()),
                Some("merge") => {}
                _ => {
                    patch.insert(DIRECTIVE.to_owned(), d.clone());
                    return Err(Error::UnknownDirective {
                        directive: value_text(&d),
                        map: Value::Object(patch).to_string(),
                    });
                }
            }
        }
        if let Some(retain) = patch.remove(RETAIN_KEYS) {
            apply_retain_keys(&mut original, &patch, &retain)?;
        }
        self.apply_element_orders(&mut original, &mut patch)?;
        self.apply_primitive_deletions(&mut original, &mut patch)?;

        for (k, pv) in patch {
            if pv.is_null() {
                super::remove_key(&mut original, &k);
                continue;
            }
            // Take the live value out in place, so the key keeps its
            // position when objects preserve insertion order.
            let ov = match original.get_mut(&k) {
                Some(v) => std::mem::take(v),
                None => empty_like(&pv),
            };
            let merged = self.merge_value(&k, ov, pv)?;
            original.insert(k, merged);
        }
        Ok(original)
    }

    /// Merges one field's patch value into its live value.
    fn merge_value(&mut self, field: &str, ov: Value, pv: Value) -> Result<Value, Error> {
        let meta = self.meta(field);
        match (ov, pv) {
            (Value::Object(o), Value::Object(p)) => {
                let base = if meta.replace { Map::new() } else { o };
                self.within(field, |m| m.merge_map(base, p))
                    .map(Value::Object)
            }
            (Value::Array(o), Value::Array(p)) => self.merge_list(field, o, p, &meta.list),
            // Types differ: the patch value replaces, processed as new.
            (_, pv @ (Value::Object(_) | Value::Array(_))) => {
                self.merge_value(field, empty_like(&pv), pv)
            }
            (_, pv) => Ok(pv),
        }
    }

    fn merge_list(
        &mut self,
        field: &str,
        original: Vec<Value>,
        patch: Vec<Value>,
        strategy: &ListStrategy,
    ) -> Result<Value, Error> {
        let objects = element_kind(&original, &patch)?;
        let merged = match (strategy, objects) {
            (ListStrategy::Atomic, _) => self.within(field, |m| m.clean_atomic(patch))?,
            (_, false) => merge_scalars(original, patch),
            (ListStrategy::MergeByKey(key), true) => {
                self.within(field, |m| m.merge_by_key(original, patch, key))?
            }
            (ListStrategy::Set, true) => {
                return Err(Error::ObjectsWithoutMergeKey {
                    field: self.dotted(field),
                })
            }
        };
        Ok(Value::Array(merged))
    }

    /// An atomic list replaces the live one; objects in it are still
    /// cleaned of nulls and directives.
    fn clean_atomic(&mut self, patch: Vec<Value>) -> Result<Vec<Value>, Error> {
        patch
            .into_iter()
            .map(|v| match v {
                Value::Object(o) => self.merge_map(Map::new(), o).map(Value::Object),
                other => Ok(other),
            })
            .collect()
    }

    /// Lists of objects merged by `key` (`mergeSlice` for maps).
    fn merge_by_key(
        &mut self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
    ) -> Result<Vec<Value>, Error> {
        let mut plain = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Some(d) = item.get(DIRECTIVE) else {
                plain.push(item);
                continue;
            };
            match d.as_str() {
                Some("delete") => {
                    let id = item
                        .get(key)
                        .ok_or_else(|| no_merge_key(&item, key))?
                        .clone();
                    original.retain(|v| !v.get(key).is_some_and(|x| order::same(x, &id)));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(Error::ListMergeDirective),
                _ => {
                    return Err(Error::UnknownDirective {
                        directive: value_text(d),
                        map: item.to_string(),
                    })
                }
            }
        }
        if replace {
            // The remaining patch elements are the whole new list.
            let mut out: Vec<Value> = Vec::with_capacity(plain.len());
            for item in plain {
                out = self.merge_one(out, item, key)?;
            }
            return Ok(out);
        }
        let live_order = original.clone();
        let mut merged = original;
        for item in &plain {
            merged = self.merge_one(merged, item.clone(), key)?;
        }
        let (p, s) = order::partition(merged, &plain, Some(key));
        Ok(order::normalize(p, s, &plain, &live_order, Some(key)))
    }

    /// Merges one patch element into the list element with the same key,
    /// or appends it.
    fn merge_one(
        &mut self,
        mut list: Vec<Value>,
        item: Value,
        key: &str,
    ) -> Result<Vec<Value>, Error> {
        let Value::Object(p) = item else {
            return Err(Error::MixedList(format!("{item}")));
        };
        let Some(id) = p.get(key).cloned() else {
            return Err(no_merge_key(&Value::Object(p), key));
        };
        let found = list
            .iter()
            .position(|v| v.get(key).is_some_and(|x| order::same(x, &id)));
        match found {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut list[i]) else {
                    return Err(Error::MixedList(Value::Array(list).to_string()));
                };
                list[i] = Value::Object(self.merge_map(o, p)?);
            }
            None => list.push(Value::Object(self.merge_map(Map::new(), p)?)),
        }
        Ok(list)
    }

    /// `$setElementOrder/<field>`: merge the field now and order the
    /// result as the directive lists it.
    fn apply_element_orders(
        &mut self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
    ) -> Result<(), Error> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive in keys {
            let field = directive[SET_ELEMENT_ORDER.len()..].to_owned();
            let order_list = match patch.remove(&directive) {
                Some(Value::Array(a)) if !field.is_empty() => a,
                _ => return Err(Error::BadSetElementOrder),
            };
            let live = match original.get(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a.clone()),
                Some(_) => return Err(Error::BadSetElementOrder),
            };
            let patch_list = match patch.remove(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a),
                Some(_) => return Err(Error::BadSetElementOrder),
            };
            let meta = self.meta(&field);
            let key = match &meta.list {
                ListStrategy::MergeByKey(k) => Some(k.as_str()),
                _ => None,
            };
            if let Some(p) = &patch_list {
                validate_order(p, &order_list, key)?;
            }
            let merged = match (live.clone(), patch_list) {
                (None, None) => continue,
                (Some(l), None) => l,
                (l, Some(p)) => {
                    match self.merge_list(&field, l.unwrap_or_default(), p, &meta.list)? {
                        Value::Array(a) => a,
                        _ => Vec::new(),
                    }
                }
            };
            let (p, s) = order::partition(merged, &order_list, key);
            let live = live.unwrap_or_default();
            original.insert(
                field,
                Value::Array(order::normalize(p, s, &order_list, &live, key)),
            );
        }
        Ok(())
    }

    /// `$deleteFromPrimitiveList/<field>`: drop those scalars from the live
    /// list.
    fn apply_primitive_deletions(
        &mut self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
    ) -> Result<(), Error> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(DELETE_FROM_PRIMITIVE_LIST))
            .cloned()
            .collect();
        for directive in keys {
            let field = &directive[DELETE_FROM_PRIMITIVE_LIST.len()..];
            let Some(Value::Array(gone)) = patch.remove(&directive) else {
                return Err(Error::BadPrimitiveList);
            };
            if field.is_empty() {
                return Err(Error::BadPrimitiveList);
            }
            if let Some(Value::Array(live)) = original.get_mut(field) {
                live.retain(|v| !gone.iter().any(|g| order::same(g, v)));
            }
        }
        Ok(())
    }
}

/// Set union of two scalar lists, then ordered (`mergeSlice` for scalars).
fn merge_scalars(original: Vec<Value>, patch: Vec<Value>) -> Vec<Value> {
    let mut merged = original.clone();
    for v in &patch {
        if !order::contains(&merged, v, None) {
            merged.push(v.clone());
        }
    }
    let mut unique_patch: Vec<Value> = Vec::new();
    for v in patch {
        if !order::contains(&unique_patch, &v, None) {
            unique_patch.push(v);
        }
    }
    let (p, s) = order::partition(merged, &unique_patch, None);
    order::normalize(p, s, &unique_patch, &original, None)
}

/// Whether the elements are objects; errors on lists of lists and on
/// mixed element types, as upstream does.
fn element_kind(a: &[Value], b: &[Value]) -> Result<bool, Error> {
    let mut kind: Option<u8> = None;
    for v in a.iter().chain(b) {
        let k = match v {
            Value::Array(_) => return Err(Error::ListOfLists),
            Value::Object(_) => 0,
            Value::String(_) => 1,
            Value::Number(_) => 2,
            Value::Bool(_) => 3,
            Value::Null => 4,
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                let all: Vec<Value> = a.iter().chain(b).cloned().collect();
                return Err(Error::MixedList(Value::Array(all).to_string()));
            }
            Some(_) => {}
        }
    }
    Ok(kind == Some(0))
}

/// `$retainKeys`: every non-null patch key must be listed; live keys not
/// listed are dropped.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
) -> Result<(), Error> {
    let Value::Array(list) = retain else {
        return Err(Error::BadRetainKeys);
    };
    let listed = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch {
        let directive =
            k.starts_with(SET_ELEMENT_ORDER) || k.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !v.is_null() && !directive && !listed(k) {
            return Err(Error::BadRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Checks that the non-deleting items of a patch list appear in the
/// `$setElementOrder` list in the same relative order.
fn validate_order(patch: &[Value], order_list: &[Value], key: Option<&str>) -> Result<(), Error> {
    let items: Vec<&Value> = patch
        .iter()
        .filter(|v| v.get(DIRECTIVE).is_none())
        .collect();
    if items.is_empty() || order_list.is_empty() {
        return Ok(());
    }
    if let Some(k) = key {
        for v in items.iter().copied().chain(order_list) {
            if order::identity(v, Some(k)).is_none() {
                return Err(no_merge_key(v, k));
            }
        }
    }
    let mut i = 0;
    for o in order_list {
        if i == items.len() {
            break;
        }
        let (a, b) = (order::identity(items[i], key), order::identity(o, key));
        if matches!((a, b), (Some(a), Some(b)) if order::same(a, b)) {
            i += 1;
        }
    }
    if i < items.len() {
        return Err(Error::OrderMismatch {
            patch: Value::Array(patch.to_vec()).to_string(),
            order: Value::Array(order_list.to_vec()).to_string(),
        });
    }
    Ok(())
}

/// An empty value of the same shape, to merge a brand-new value into.
fn empty_like(v: &Value) -> Value {
    match v {
        Value::Object(_) => Value::Object(Map::new()),
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Null,
    }
}

fn value_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn no_merge_key(item: &Value, key: &str) -> Error {
    Error::NoMergeKey {
        map: item.to_string(),
        key: key.to_owned(),
    }
}

#[cfg(test)]
mod tests;
