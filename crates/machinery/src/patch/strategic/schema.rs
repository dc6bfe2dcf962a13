//! Patch metadata: how each field of a type takes a strategic merge patch.
//!
//! Upstream counterpart: the `patchStrategy` / `patchMergeKey` struct tags
//! of `k8s.io/api` types, read through `strategicpatch.LookupPatchMeta`.
//! Here the metadata is data: a [`PatchSchema`] answers for a field path
//! (field names from the object root, list indices left out, e.g.
//! `["spec", "containers", "ports"]`), and [`SchemaTable`] is a ready
//! implementation that the `api` crate fills per type, either with the
//! builder or from a static table of upstream's tag strings.

use std::collections::HashMap;

/// How a list field merges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ListStrategy {
    /// No metadata: the patch list replaces the live list.
    #[default]
    Atomic,
    /// `patchStrategy:"merge"` with `patchMergeKey`: elements are objects
    /// matched by the value of this key (containers by `name`, ports by
    /// `containerPort`).
    MergeByKey(String),
    /// `patchStrategy:"merge"` on a list of scalars: set union, e.g.
    /// `metadata.finalizers`.
    Set,
}

/// The patch metadata of one field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMeta {
    pub list: ListStrategy,
    /// `patchStrategy:"replace"` on an object: the patch value replaces it
    /// instead of merging into it.
    pub replace: bool,
    /// `patchStrategy:"retainKeys"`: clients send `$retainKeys` for this
    /// object (e.g. a Deployment's `spec.strategy`, a volume's source). The
    /// directive is honoured whenever present; this flag documents the
    /// field and lets a patch creator know to send it.
    pub retain_keys: bool,
}

/// Answers the patch metadata of a field.
pub trait PatchSchema {
    /// Metadata of the field at `path` (field names only); fields the
    /// schema does not know get `FieldMeta::default()` — merged objects,
    /// atomic lists.
    fn field(&self, path: &[&str]) -> FieldMeta;
}

/// No metadata at all: objects merge, lists replace. This is what a
/// strategic merge patch means for a type without tags.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSchema;

impl PatchSchema for NoSchema {
    fn field(&self, _path: &[&str]) -> FieldMeta {
        FieldMeta::default()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("unknown patch strategy {strategy:?} for field {path:?}")]
    UnknownStrategy { path: String, strategy: String },
}

/// A table of field metadata keyed by dotted path (`spec.containers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaTable {
    fields: HashMap<String, FieldMeta>,
}

impl SchemaTable {
    pub fn new() -> Self {
        SchemaTable::default()
    }

    fn entry(&mut self, path: &str) -> &mut FieldMeta {
        self.fields.entry(path.to_owned()).or_default()
    }

    /// A list of objects merged by `key`.
    pub fn merge_key(mut self, path: &str, key: &str) -> Self {
        self.entry(path).list = ListStrategy::MergeByKey(key.to_owned());
        self
    }

    /// A list of scalars merged as a set.
    pub fn set_list(mut self, path: &str) -> Self {
        self.entry(path).list = ListStrategy::Set;
        self
    }

    /// An object replaced whole by a patch.
    pub fn replace(mut self, path: &str) -> Self {
        self.entry(path).replace = true;
        self
    }

    /// An object carrying the retainKeys strategy.
    pub fn retain_keys(mut self, path: &str) -> Self {
        self.entry(path).retain_keys = true;
        self
    }

    /// Copies every entry of `other` under `prefix`, so a type's table can
    /// be reused where the type is embedded (a PodSpec under
    /// `spec.template.spec` of a Deployment).
    pub fn mount(mut self, prefix: &str, other: &SchemaTable) -> Self {
        for (path, meta) in &other.fields {
            let full = if prefix.is_empty() {
                path.clone()
            } else {
                format!("{prefix}.{path}")
            };
            self.fields.insert(full, meta.clone());
        }
        self
    }

    /// Builds a table from upstream's tag strings: `(path, patchStrategy,
    /// patchMergeKey)`, the strategy being `merge`, `replace`,
    /// `retainKeys` or a comma list such as `merge,retainKeys`. A `merge`
    /// with an empty key marks a list of scalars.
    pub fn from_tags(entries: &[(&str, &str, &str)]) -> Result<Self, SchemaError> {
        let mut table = SchemaTable::new();
        for &(path, strategy, key) in entries {
            for s in strategy.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                table = match s {
                    "merge" if key.is_empty() => table.set_list(path),
                    "merge" => table.merge_key(path, key),
                    "replace" => table.replace(path),
                    "retainKeys" => table.retain_keys(path),
                    other => {
                        return Err(SchemaError::UnknownStrategy {
                            path: path.to_owned(),
                            strategy: other.to_owned(),
                        })
                    }
                };
            }
        }
        Ok(table)
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl PatchSchema for SchemaTable {
    fn field(&self, path: &[&str]) -> FieldMeta {
        self.fields
            .get(&path.join("."))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_lookup() {
        let t = SchemaTable::new()
            .merge_key("spec.containers", "name")
            .set_list("metadata.finalizers")
            .retain_keys("spec.strategy")
            .replace("spec.opaque");
        assert_eq!(
            t.field(&["spec", "containers"]).list,
            ListStrategy::MergeByKey("name".into())
        );
        assert_eq!(t.field(&["metadata", "finalizers"]).list, ListStrategy::Set);
        assert!(t.field(&["spec", "strategy"]).retain_keys);
        assert!(t.field(&["spec", "opaque"]).replace);
        assert_eq!(t.field(&["spec", "tolerations"]), FieldMeta::default());
        assert_eq!(
            NoSchema.field(&["spec", "containers"]),
            FieldMeta::default()
        );
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn mounting_embeds_a_table() {
        let pod = SchemaTable::new().merge_key("containers", "name");
        let deploy = SchemaTable::new().mount("spec.template.spec", &pod);
        assert_eq!(
            deploy
                .field(&["spec", "template", "spec", "containers"])
                .list,
            ListStrategy::MergeByKey("name".into())
        );
        assert!(SchemaTable::new().mount("", &pod).field(&["containers"]) != FieldMeta::default());
    }

    #[test]
    fn from_upstream_tags() {
        let t = SchemaTable::from_tags(&[
            ("spec.volumes", "merge,retainKeys", "name"),
            ("metadata.finalizers", "merge", ""),
            ("spec.strategy", "retainKeys", ""),
        ])
        .unwrap();
        let v = t.field(&["spec", "volumes"]);
        assert_eq!(v.list, ListStrategy::MergeByKey("name".into()));
        assert!(v.retain_keys);
        assert_eq!(t.field(&["metadata", "finalizers"]).list, ListStrategy::Set);
        let err = SchemaTable::from_tags(&[("a", "mergeish", "")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown patch strategy \"mergeish\" for field \"a\""
        );
        assert!(SchemaTable::new().is_empty());
    }
}
