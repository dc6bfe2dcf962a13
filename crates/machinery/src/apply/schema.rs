//! What server-side apply needs to know about a type's shape.
//!
//! Upstream counterpart: the `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` extensions that
//! structured-merge-diff reads from the OpenAPI schema, and the registry
//! strategies' `GetResetFields`. Paths are field names from the object
//! root with list positions left out (`["spec", "containers", "ports"]`),
//! the same convention as [`PatchSchema`].

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::path::Path;
use super::set::FieldSet;
use crate::patch::strategic::{ListStrategy, PatchSchema};

/// How the items of a list are identified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, owned and replaced as a whole.
    #[default]
    Atomic,
    /// A set of scalars (`x-kubernetes-list-type: set`).
    Set,
    /// Objects identified by these key fields (`x-kubernetes-list-type:
    /// map` with `x-kubernetes-list-map-keys`).
    Map(Vec<String>),
}

/// Answers the apply semantics of fields.
pub trait ApplySchema {
    fn list_type(&self, path: &[&str]) -> ListType;

    /// `x-kubernetes-map-type: atomic` (e.g. a Deployment's
    /// `spec.selector`): the object is owned and replaced as a whole.
    fn atomic_map(&self, _path: &[&str]) -> bool {
        false
    }

    /// The default of a list-map key field, used when an item omits it
    /// (container ports omit `protocol`, which defaults to TCP).
    fn key_default(&self, _list: &[&str], _key: &str) -> Option<Value> {
        None
    }

    /// An object kube-apiserver always serializes (a non-pointer Go
    /// struct such as `spec.template`), so an update never "adds" it as a
    /// whole. Top-level `metadata`, `spec` and `status` always count.
    fn always_present(&self, _path: &[&str]) -> bool {
        false
    }

    /// Fields whose ownership is not tracked for writes through
    /// `subresource` (`None`: the main resource) because the strategy
    /// resets them: `status` for the main resource of most types, `spec`
    /// for `/status` (upstream `ResetFieldsStrategy`).
    fn reset_fields(&self, _subresource: Option<&str>) -> FieldSet {
        FieldSet::new()
    }
}

/// Reads list semantics from strategic-merge-patch metadata: a merge key
/// becomes a one-key list map, a merged scalar list a set, everything
/// else atomic. Upstream's multi-key maps (container ports by
/// `containerPort` and `protocol`) need an [`ApplyTable`] entry.
pub struct FromPatchSchema<'a>(pub &'a dyn PatchSchema);

impl ApplySchema for FromPatchSchema<'_> {
    fn list_type(&self, path: &[&str]) -> ListType {
        from_strategy(self.0.field(path).list)
    }
}

fn from_strategy(s: ListStrategy) -> ListType {
    match s {
        ListStrategy::Atomic => ListType::Atomic,
        ListStrategy::Set => ListType::Set,
        ListStrategy::MergeByKey(k) => ListType::Map(vec![k]),
    }
}

/// A table of apply semantics by dotted path, falling back to a
/// [`PatchSchema`] for lists it does not name.
#[derive(Default)]
pub struct ApplyTable<'a> {
    base: Option<&'a dyn PatchSchema>,
    lists: HashMap<String, ListType>,
    atomic_maps: HashSet<String>,
    key_defaults: HashMap<(String, String), Value>,
    present: HashSet<String>,
    reset: HashMap<Option<String>, FieldSet>,
}

impl<'a> ApplyTable<'a> {
    pub fn new() -> Self {
        ApplyTable::default()
    }

    /// Lists this table does not name take their type from `base`.
    pub fn with_base(mut self, base: &'a dyn PatchSchema) -> Self {
        self.base = Some(base);
        self
    }

    pub fn list_map(mut self, path: &str, keys: &[&str]) -> Self {
        let keys = keys.iter().map(|k| (*k).to_owned()).collect();
        self.lists.insert(path.to_owned(), ListType::Map(keys));
        self
    }

    pub fn set(mut self, path: &str) -> Self {
        self.lists.insert(path.to_owned(), ListType::Set);
        self
    }

    pub fn atomic_list(mut self, path: &str) -> Self {
        self.lists.insert(path.to_owned(), ListType::Atomic);
        self
    }

    pub fn mark_atomic_map(mut self, path: &str) -> Self {
        self.atomic_maps.insert(path.to_owned());
        self
    }

    pub fn default_key(mut self, list: &str, key: &str, value: Value) -> Self {
        self.key_defaults
            .insert((list.to_owned(), key.to_owned()), value);
        self
    }

    pub fn mark_always_present(mut self, path: &str) -> Self {
        self.present.insert(path.to_owned());
        self
    }

    /// Marks dotted field paths as reset for writes through
    /// `subresource`.
    pub fn reset(mut self, subresource: Option<&str>, paths: &[&str]) -> Self {
        let set = self
            .reset
            .entry(subresource.map(str::to_owned))
            .or_default();
        for p in paths {
            let names: Vec<&str> = p.split('.').collect();
            set.insert(&Path::fields(&names));
        }
        self
    }
}

impl ApplySchema for ApplyTable<'_> {
    fn list_type(&self, path: &[&str]) -> ListType {
        match self.lists.get(&path.join(".")) {
            Some(t) => t.clone(),
            None => self
                .base
                .map(|b| from_strategy(b.field(path).list))
                .unwrap_or_default(),
        }
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        self.atomic_maps.contains(&path.join("."))
    }

    fn key_default(&self, list: &[&str], key: &str) -> Option<Value> {
        self.key_defaults
            .get(&(list.join("."), key.to_owned()))
            .cloned()
    }

    fn always_present(&self, path: &[&str]) -> bool {
        self.present.contains(&path.join("."))
    }

    fn reset_fields(&self, subresource: Option<&str>) -> FieldSet {
        self.reset
            .get(&subresource.map(str::to_owned))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::strategic::SchemaTable;
    use serde_json::json;

    #[test]
    fn table_overrides_patch_metadata() {
        let smp = SchemaTable::new()
            .merge_key("spec.containers", "name")
            .merge_key("spec.containers.ports", "containerPort")
            .set_list("metadata.finalizers");
        let t = ApplyTable::new()
            .with_base(&smp)
            .list_map("spec.containers.ports", &["containerPort", "protocol"])
            .default_key("spec.containers.ports", "protocol", json!("TCP"))
            .mark_atomic_map("spec.selector")
            .reset(None, &["status"]);
        assert_eq!(
            t.list_type(&["spec", "containers"]),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            t.list_type(&["spec", "containers", "ports"]),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(t.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(t.list_type(&["spec", "args"]), ListType::Atomic);
        assert!(t.atomic_map(&["spec", "selector"]));
        assert_eq!(
            t.key_default(&["spec", "containers", "ports"], "protocol"),
            Some(json!("TCP"))
        );
        assert!(t.reset_fields(None).has(&Path::fields(&["status"])));
        assert!(t.reset_fields(Some("status")).is_empty());
        let adapted = FromPatchSchema(&smp);
        assert_eq!(
            adapted.list_type(&["spec", "containers", "ports"]),
            ListType::Map(vec!["containerPort".into()])
        );
    }
}
