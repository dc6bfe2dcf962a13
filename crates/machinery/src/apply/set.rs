//! Sets of field paths, and their `fieldsV1` wire form.
//!
//! Upstream counterpart: `sigs.k8s.io/structured-merge-diff/fieldpath`
//! (`Set`, `SetNodeMap`, `serialize.go`). A set is a tree: at each node,
//! `members` are the elements owned themselves and `children` the elements
//! under which something is owned. `fieldsV1` writes the tree as nested
//! objects, `{}` for a member with nothing under it and `".": {}` for a
//! member that also has children (a list item owned as a whole and field
//! by field).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{write_go_json_string, Path, PathElement};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    #[error("fieldsV1 must be a JSON object, got {0}")]
    NotAnObject(String),
    #[error("invalid fieldsV1 key {key:?}: {reason}")]
    BadKey { key: String, reason: String },
}

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    /// Never holds an empty set, so equality is structural.
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        FieldSet::default()
    }

    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Self {
        let mut s = FieldSet::new();
        for p in paths {
            s.insert(p);
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &Path) {
        self.insert_elems(&path.0);
    }

    fn insert_elems(&mut self, elems: &[PathElement]) {
        match elems {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self
                .children
                .entry(first.clone())
                .or_default()
                .insert_elems(rest),
        }
    }

    pub fn has(&self, path: &Path) -> bool {
        let mut node = self;
        for (i, pe) in path.0.iter().enumerate() {
            if i + 1 == path.0.len() {
                return node.members.contains(pe);
            }
            match node.children.get(pe) {
                Some(child) => node = child,
                None => return false,
            }
        }
        false
    }

    /// Whether some member lies strictly under `path`.
    pub fn has_under(&self, path: &Path) -> bool {
        let mut node = self;
        for pe in &path.0 {
            match node.children.get(pe) {
                Some(child) => node = child,
                None => return false,
            }
        }
        !path.0.is_empty()
    }

    /// The subset under `pe`, with `pe` stripped from the paths.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub fn is_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, set) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(set),
                None => set.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, set) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let i = set.intersection(theirs);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// The paths of `self` that are not in `other` (exact paths: a member
    /// of `other` does not remove what lies under it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, set) in &self.children {
            let d = match other.children.get(pe) {
                Some(theirs) => set.difference(theirs),
                None => set.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// Like [`difference`](Self::difference), but a member of `other` also
    /// removes everything under it (upstream `RecursiveDifference`, used
    /// to drop reset fields such as `status`).
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, set) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let d = match other.children.get(pe) {
                Some(theirs) => set.recursive_difference(theirs),
                None => set.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// Every path in the set: members of a node before what lies under
    /// it, each in element order (upstream `Set.Iterate`).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(Path(p));
        }
        for (pe, set) in &self.children {
            prefix.push(pe.clone());
            set.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The members with nothing under them (upstream `Set.Leaves`).
    pub fn leaves(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_leaves(&mut Vec::new(), &mut out);
        out
    }

    fn collect_leaves(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for pe in self
            .members
            .iter()
            .filter(|pe| !self.children.contains_key(*pe))
        {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(Path(p));
        }
        for (pe, set) in &self.children {
            prefix.push(pe.clone());
            set.collect_leaves(prefix, out);
            prefix.pop();
        }
    }

    /// Parses a `fieldsV1` object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(map) = v else {
            return Err(FieldsV1Error::NotAnObject(v.to_string()));
        };
        let mut out = FieldSet::new();
        for (key, sub) in map {
            if key == "." {
                // Only meaningful below the root, where the parent reads it.
                continue;
            }
            let pe = parse_key(key)?;
            let Value::Object(inner) = sub else {
                return Err(FieldsV1Error::NotAnObject(sub.to_string()));
            };
            if inner.is_empty() || inner.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let child = FieldSet::from_fields_v1(sub)?;
            if !child.is_empty() {
                out.children.insert(pe, child);
            }
        }
        Ok(out)
    }

    /// The set as a `fieldsV1` value. Objects are built in upstream's key
    /// order; how they print depends on serde_json's map (sorted unless
    /// `preserve_order`); [`to_fields_v1_string`](Self::to_fields_v1_string)
    /// gives upstream's exact bytes.
    pub fn to_fields_v1(&self) -> Value {
        self.to_value(false)
    }

    fn to_value(&self, member: bool) -> Value {
        let mut m = Map::new();
        if member {
            m.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (pe, member, child) in self.entries() {
            let v = match child {
                Some(c) => c.to_value(member),
                None => Value::Object(Map::new()),
            };
            m.insert(pe.to_fields_key(), v);
        }
        Value::Object(m)
    }

    /// Exactly the bytes kube-apiserver writes for this set.
    pub fn to_fields_v1_string(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, false);
        out
    }

    fn write(&self, out: &mut String, member: bool) {
        out.push('{');
        let mut first = true;
        if member {
            out.push_str("\".\":{}");
            first = false;
        }
        for (pe, member, child) in self.entries() {
            if !first {
                out.push(',');
            }
            first = false;
            write_go_json_string(out, &pe.to_fields_key());
            out.push(':');
            match child {
                Some(c) => c.write(out, member),
                None => out.push_str("{}"),
            }
        }
        out.push('}');
    }

    /// Members and children merged in element order: `(element, is a
    /// member, children)`.
    fn entries(&self) -> Vec<(&PathElement, bool, Option<&FieldSet>)> {
        let mut all: Vec<(&PathElement, bool, Option<&FieldSet>)> = self
            .children
            .iter()
            .map(|(pe, c)| (pe, self.members.contains(pe), Some(c)))
            .collect();
        all.extend(
            self.members
                .iter()
                .filter(|pe| !self.children.contains_key(*pe))
                .map(|pe| (pe, true, None)),
        );
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }
}

fn parse_key(key: &str) -> Result<PathElement, FieldsV1Error> {
    let bad = |reason: &str| FieldsV1Error::BadKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let (prefix, rest) = key
        .split_once(':')
        .ok_or_else(|| bad("missing a prefix (f:, k:, v: or i:)"))?;
    match prefix {
        "f" => Ok(PathElement::Field(rest.to_owned())),
        "v" => serde_json::from_str(rest)
            .map(PathElement::Value)
            .map_err(|e| bad(&e.to_string())),
        "i" => rest
            .parse::<usize>()
            .map(PathElement::Index)
            .map_err(|e| bad(&e.to_string())),
        "k" => match serde_json::from_str::<Value>(rest) {
            Ok(Value::Object(m)) if !m.is_empty() => Ok(PathElement::key(m)),
            Ok(_) => Err(bad("key must be a non-empty object")),
            Err(e) => Err(bad(&e.to_string())),
        },
        _ => Err(bad("unknown prefix")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(names: &[&str]) -> Path {
        Path::fields(names)
    }

    #[test]
    fn round_trips_upstream_bytes() {
        // Shapes as kube-apiserver writes them (Server-Side Apply docs and
        // `kubectl get -o json --show-managed-fields`).
        for text in [
            r#"{"f:data":{"f:key":{}},"f:metadata":{"f:labels":{"f:test-label":{}}}}"#,
            r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}}}}}}"#,
            r#"{"f:metadata":{"f:finalizers":{"v:\"a\"":{},"v:\"b\"":{}}}}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let set = FieldSet::from_fields_v1(&v).unwrap();
            assert_eq!(set.to_fields_v1_string(), text);
            assert_eq!(set.to_fields_v1(), v);
        }
    }

    #[test]
    fn numeric_keys_sort_numerically() {
        let mut s = FieldSet::new();
        for port in [10, 9, 100] {
            s.insert(&p(&["ports"]).child(PathElement::key([("port", json!(port))])));
        }
        assert_eq!(
            s.to_fields_v1_string(),
            r#"{"f:ports":{"k:{\"port\":9}":{},"k:{\"port\":10}":{},"k:{\"port\":100}":{}}}"#
        );
    }

    #[test]
    fn bad_fields_v1_is_an_error() {
        for bad in [
            json!([]),
            json!({"x:y": {}}),
            json!({"nocolon": {}}),
            json!({"f:a": 1}),
            json!({"k:[1]": {}}),
            json!({"v:{": {}}),
            json!({"i:-1": {}}),
        ] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_operations() {
        let a = FieldSet::from_paths(&[p(&["spec", "a"]), p(&["spec", "b"]), p(&["status"])]);
        let b = FieldSet::from_paths(&[p(&["spec", "b"]), p(&["spec", "c"])]);
        assert_eq!(
            a.union(&b).paths(),
            vec![
                p(&["status"]),
                p(&["spec", "a"]),
                p(&["spec", "b"]),
                p(&["spec", "c"])
            ]
        );
        assert_eq!(a.intersection(&b).paths(), vec![p(&["spec", "b"])]);
        assert_eq!(
            a.difference(&b).paths(),
            vec![p(&["status"]), p(&["spec", "a"])]
        );
        assert!(a.has(&p(&["spec", "a"])) && !a.has(&p(&["spec"])));
        assert!(a.has_under(&p(&["spec"])) && !a.has_under(&p(&["status"])));
        let spec = FieldSet::from_paths(&[p(&["spec"])]);
        assert_eq!(a.difference(&spec), a);
        assert_eq!(a.recursive_difference(&spec).paths(), vec![p(&["status"])]);
        assert!(a.difference(&a).is_empty());
        let item = p(&["list"]).child(PathElement::key([("name", json!("x"))]));
        let with_item = FieldSet::from_paths(&[item.clone(), item.child(PathElement::field("v"))]);
        assert_eq!(with_item.paths().len(), 2);
        assert_eq!(
            with_item.leaves(),
            vec![item.child(PathElement::field("v"))]
        );
        assert_eq!(a.difference(&a), FieldSet::new());
    }
}
