//! Walks over JSON objects guided by an [`ApplySchema`]: the fields an
//! object sets, what changed between two objects, the structured merge of
//! an apply configuration into a live object, and removal of fields.
//!
//! Upstream counterpart: `sigs.k8s.io/structured-merge-diff/typed`
//! (`tofieldset.go`, `compare.go`, `merge.go`, `remove.go`). Upstream
//! walks Go-typed values, so "is this object always serialized" comes
//! from Go struct layout; here it comes from
//! [`ApplySchema::always_present`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::path::{Path, PathElement};
use super::schema::{ApplySchema, ListType};
use super::set::FieldSet;

/// Metadata fields nobody owns (upstream's strip-meta manager).
const STRIPPED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

/// Built once: every write's managedFields bookkeeping subtracts it two
/// or three times, and building it each time showed in profiles.
pub(crate) fn stripped_set() -> &'static FieldSet {
    static SET: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(|| {
        let paths: Vec<Path> = STRIPPED.iter().map(|p| Path::fields(p)).collect();
        FieldSet::from_paths(&paths)
    });
    &SET
}

/// The fields `obj` sets, as an apply configuration claims them: leaves,
/// list items by key or value, atomic lists and maps whole, empty objects
/// and nulls. Metadata nobody owns (`apiVersion`, `kind`, `metadata.name`,
/// `uid`, `resourceVersion`, `managedFields`, ...) is left out. Items
/// whose keys cannot be read are named by position instead of failing.
pub fn field_set(obj: &Value, schema: &dyn ApplySchema) -> FieldSet {
    let (set, _) = field_set_with_errors(obj, schema);
    set
}

/// [`field_set`] plus the shape errors it met (missing list-map keys,
/// duplicate items, non-scalar set members), in upstream's wording.
pub(crate) fn field_set_with_errors(
    obj: &Value,
    schema: &dyn ApplySchema,
) -> (FieldSet, Vec<String>) {
    let mut w = Walker::new(schema);
    let mut out = FieldSet::new();
    let mut errors = Vec::new();
    if let Value::Object(m) = obj {
        w.set_fields(m, &mut out, &mut errors);
    }
    (out.difference(stripped_set()), errors)
}

/// What changed from one object to another; paths as [`field_set`] names
/// them, plus objects and lists that appeared or disappeared as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Drops unowned metadata, and everything under `reset`.
    pub(crate) fn filter(self, reset: &FieldSet) -> Comparison {
        let strip = stripped_set();
        let f = |s: FieldSet| s.difference(strip).recursive_difference(reset);
        Comparison {
            added: f(self.added),
            modified: f(self.modified),
            removed: f(self.removed),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compares two objects; `None` is an object that does not exist yet.
pub fn compare(old: Option<&Value>, new: Option<&Value>, schema: &dyn ApplySchema) -> Comparison {
    let mut w = Walker::new(schema);
    let mut out = Comparison::default();
    w.compare(old, new, &mut out);
    out
}

/// Merges an apply configuration into a live object: objects merge field
/// by field, list maps and sets merge item by item, atomic lists and maps
/// and scalars take the configuration's value; a `null` removes the field.
pub fn merge(live: &Value, config: &Value, schema: &dyn ApplySchema) -> Value {
    let mut w = Walker::new(schema);
    let live = if live.is_object() { Some(live) } else { None };
    w.merge(live, config).unwrap_or(Value::Object(Map::new()))
}

/// Removes every member of `set` from `obj` (a member takes what lies
/// under it along), then objects and lists the removal left empty.
pub fn remove(obj: &mut Value, set: &FieldSet, schema: &dyn ApplySchema) {
    let mut w = Walker::new(schema);
    w.remove(obj, set);
}

struct Walker<'s> {
    schema: &'s dyn ApplySchema,
    /// Field names from the root, list positions left out.
    spath: Vec<String>,
    path: Vec<PathElement>,
}

impl<'s> Walker<'s> {
    fn new(schema: &'s dyn ApplySchema) -> Self {
        Walker {
            schema,
            spath: Vec::new(),
            path: Vec::new(),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.spath.iter().map(String::as_str).collect()
    }

    fn here(&self) -> Path {
        Path(self.path.clone())
    }

    fn push_field(&mut self, name: &str) {
        self.spath.push(name.to_owned());
        self.path.push(PathElement::field(name));
    }

    fn pop_field(&mut self) {
        self.spath.pop();
        self.path.pop();
    }

    fn list_type(&self) -> ListType {
        self.schema.list_type(&self.names())
    }

    fn atomic_map(&self) -> bool {
        !self.spath.is_empty() && self.schema.atomic_map(&self.names())
    }

    fn always_present(&self) -> bool {
        let top = matches!(self.names()[..], ["metadata"] | ["spec"] | ["status"]);
        top || self.schema.always_present(&self.names())
    }

    /// The element naming item `index` of the list at the current path.
    fn item_element(
        &self,
        lt: &ListType,
        index: usize,
        item: &Value,
    ) -> Result<PathElement, String> {
        match lt {
            ListType::Atomic => Ok(PathElement::Index(index)),
            ListType::Set => match item {
                Value::Object(_) | Value::Array(_) => Err(format!(
                    "{}: element {index}: expected a scalar in a set",
                    self.here()
                )),
                v => Ok(PathElement::Value(v.clone())),
            },
            ListType::Map(keys) => {
                let Value::Object(m) = item else {
                    return Err(format!(
                        "{}: element {index}: associative list items must be objects",
                        self.here()
                    ));
                };
                let mut fields = Vec::with_capacity(keys.len());
                for k in keys {
                    let value = match m.get(k) {
                        Some(v) => v.clone(),
                        None => self.schema.key_default(&self.names(), k).ok_or_else(|| {
                            format!(
                                "{}: element {index}: associative list with keys has an element that omits key field {} (and doesn't have default value)",
                                self.here(),
                                crate::quote::go_quote(k)
                            )
                        })?,
                    };
                    fields.push((k.clone(), value));
                }
                Ok(PathElement::key(fields))
            }
        }
    }

    /// Elements of every item; `None` where the item cannot be named.
    fn elements(
        &self,
        lt: &ListType,
        items: &[Value],
        errors: &mut Vec<String>,
    ) -> Vec<Option<PathElement>> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match self.item_element(lt, i, item) {
                Ok(pe) => Some(pe),
                Err(e) => {
                    errors.push(e);
                    None
                }
            })
            .collect()
    }

    // ---- field sets ----

    fn set_fields(&mut self, m: &Map<String, Value>, out: &mut FieldSet, errors: &mut Vec<String>) {
        for (k, child) in m {
            self.push_field(k);
            self.set_value(child, out, errors);
            self.pop_field();
        }
    }

    fn set_value(&mut self, v: &Value, out: &mut FieldSet, errors: &mut Vec<String>) {
        match v {
            Value::Object(m) if !m.is_empty() && !self.atomic_map() => {
                self.set_fields(m, out, errors)
            }
            Value::Array(items) => {
                let lt = self.list_type();
                if lt == ListType::Atomic {
                    out.insert(&self.here());
                    return;
                }
                let pes = self.elements(&lt, items, errors);
                let mut seen = BTreeMap::new();
                for (i, (item, pe)) in items.iter().zip(pes).enumerate() {
                    let pe = pe.unwrap_or(PathElement::Index(i));
                    if seen.insert(pe.clone(), ()).is_some() {
                        errors.push(format!("{}: duplicate entries for key {pe}", self.here()));
                    }
                    self.path.push(pe);
                    if let Value::Object(m) = item {
                        self.set_fields(m, out, errors);
                    }
                    out.insert(&self.here());
                    self.path.pop();
                }
            }
            _ => out.insert(&self.here()),
        }
    }

    // ---- comparison ----

    fn leaf(&self, l: Option<&Value>, r: Option<&Value>, out: &mut Comparison) {
        match (l, r) {
            (None, Some(_)) => out.added.insert(&self.here()),
            (Some(_), None) => out.removed.insert(&self.here()),
            (Some(a), Some(b)) if a != b => out.modified.insert(&self.here()),
            _ => {}
        }
    }

    fn compare(&mut self, l: Option<&Value>, r: Option<&Value>, out: &mut Comparison) {
        // Equal subtrees add nothing to any of the three sets. Most writes
        // (a status patch, a Lease renewal) change a few fields of a large
        // object: comparing values first skips walking, path building and
        // schema lookups for everything else.
        if let (Some(a), Some(b)) = (l, r) {
            if a == b {
                return;
            }
        }
        let kind = |v: &Value| match v {
            Value::Object(_) => 1,
            Value::Array(_) => 2,
            _ => 0,
        };
        let k = match (l, r) {
            (Some(a), Some(b)) if kind(a) != kind(b) => 0,
            (Some(a), _) | (None, Some(a)) => kind(a),
            (None, None) => return,
        };
        let is_empty = |v: Option<&Value>| match v {
            None => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        let both_empty = is_empty(l) && is_empty(r);
        match k {
            1 if !both_empty && !self.atomic_map() => {
                let empty = Map::new();
                let lm = l.and_then(Value::as_object).unwrap_or(&empty);
                let rm = r.and_then(Value::as_object).unwrap_or(&empty);
                let mut keys: Vec<&String> = lm.keys().chain(rm.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    self.push_field(key);
                    self.compare(lm.get(key.as_str()), rm.get(key.as_str()), out);
                    self.pop_field();
                }
            }
            2 if !both_empty && self.list_type() != ListType::Atomic => {
                self.compare_lists(l, r, out)
            }
            _ => return self.leaf(l, r, out),
        }
        // An object or list that appeared or went as a whole is owned as
        // such, unless it is always there (non-pointer structs upstream).
        if !self.path.is_empty() && (self.list_item() || !self.always_present()) {
            match (l, r) {
                (None, Some(_)) => out.added.insert(&self.here()),
                (Some(_), None) => out.removed.insert(&self.here()),
                _ => {}
            }
        }
    }

    fn list_item(&self) -> bool {
        !matches!(self.path.last(), Some(PathElement::Field(_)) | None)
    }

    fn compare_lists(&mut self, l: Option<&Value>, r: Option<&Value>, out: &mut Comparison) {
        let lt = self.list_type();
        let empty = Vec::new();
        let la = l.and_then(Value::as_array).unwrap_or(&empty);
        let ra = r.and_then(Value::as_array).unwrap_or(&empty);
        let mut ignored = Vec::new();
        let mut by_pe: BTreeMap<PathElement, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
        for (i, (item, pe)) in la
            .iter()
            .zip(self.elements(&lt, la, &mut ignored))
            .enumerate()
        {
            let pe = pe.unwrap_or(PathElement::Index(i));
            by_pe.entry(pe).or_default().0.push(item);
        }
        for (i, (item, pe)) in ra
            .iter()
            .zip(self.elements(&lt, ra, &mut ignored))
            .enumerate()
        {
            let pe = pe.unwrap_or(PathElement::Index(i));
            by_pe.entry(pe).or_default().1.push(item);
        }
        for (pe, (ls, rs)) in by_pe {
            self.path.push(pe);
            if ls.len() >= 2 || rs.len() >= 2 {
                // Duplicated items are compared as one value.
                match (ls.is_empty(), rs.is_empty()) {
                    (false, false) if ls != rs => out.modified.insert(&self.here()),
                    (true, false) => out.added.insert(&self.here()),
                    (false, true) => out.removed.insert(&self.here()),
                    _ => {}
                }
            } else {
                self.compare(ls.first().copied(), rs.first().copied(), out);
            }
            self.path.pop();
        }
    }

    // ---- merge ----

    fn merge(&mut self, l: Option<&Value>, r: &Value) -> Option<Value> {
        match (l, r) {
            (_, Value::Null) => None,
            (Some(Value::Object(lm)), Value::Object(rm)) if !self.atomic_map() => {
                let mut out = lm.clone();
                for (k, rv) in rm {
                    self.spath.push(k.clone());
                    match self.merge(lm.get(k), rv) {
                        Some(v) => {
                            out.insert(k.clone(), v);
                        }
                        None => {
                            out.remove(k);
                        }
                    }
                    self.spath.pop();
                }
                Some(Value::Object(out))
            }
            (Some(Value::Array(la)), Value::Array(ra)) => {
                let lt = self.list_type();
                if lt == ListType::Atomic {
                    return Some(without_nulls(r));
                }
                Some(Value::Array(self.merge_lists(&lt, la, ra)))
            }
            _ => Some(without_nulls(r)),
        }
    }

    /// Items only in the live list keep their place; items of the
    /// configuration come in its order, merged with their live twin
    /// (upstream `mergingWalker.visitListItems`).
    fn merge_lists(&mut self, lt: &ListType, la: &[Value], ra: &[Value]) -> Vec<Value> {
        let mut ignored = Vec::new();
        let lpes = self.elements(lt, la, &mut ignored);
        let rpes = self.elements(lt, ra, &mut ignored);
        let find = |pes: &[Option<PathElement>], pe: &Option<PathElement>| -> Option<usize> {
            pe.as_ref()
                .and_then(|pe| pes.iter().position(|p| p.as_ref() == Some(pe)))
        };
        // Configuration items that also exist live, in configuration order.
        let shared: Vec<usize> = (0..ra.len())
            .filter(|&j| find(&lpes, &rpes[j]).is_some())
            .collect();
        let mut next_shared = 0;
        let mut merged = vec![false; ra.len()];
        let mut out = Vec::with_capacity(la.len() + ra.len());
        let (mut i, mut j) = (0, 0);
        while i < la.len() || j < ra.len() {
            if i < la.len() && j < ra.len() {
                if lpes[i].is_some() && lpes[i] == rpes[j] {
                    out.extend(self.merge(Some(&la[i]), &ra[j]));
                    merged[j] = true;
                    if shared.get(next_shared) == Some(&j) {
                        next_shared += 1;
                    }
                    i += 1;
                    j += 1;
                    continue;
                }
                let in_config = find(&rpes, &lpes[i]);
                if let (Some(_), Some(&want)) = (in_config, shared.get(next_shared)) {
                    if rpes[want] != lpes[i] {
                        i += 1;
                        continue;
                    }
                }
            }
            if i < la.len() {
                match find(&rpes, &lpes[i]) {
                    None => {
                        out.push(la[i].clone());
                        i += 1;
                        continue;
                    }
                    Some(k) if merged[k] => {
                        i += 1;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            if j < ra.len() {
                let live = find(&lpes, &rpes[j]).map(|k| &la[k]);
                out.extend(self.merge(live, &ra[j]));
                merged[j] = true;
                if shared.get(next_shared) == Some(&j) {
                    next_shared += 1;
                }
                j += 1;
            }
        }
        out
    }

    // ---- removal ----

    fn remove(&mut self, v: &mut Value, set: &FieldSet) {
        match v {
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    let pe = PathElement::field(k.as_str());
                    if set.is_member(&pe) {
                        m.remove(&k);
                    } else if let Some(sub) = set.child(&pe) {
                        self.push_field(&k);
                        let child = m.get_mut(&k);
                        let emptied = child.is_some_and(|c| {
                            let before = is_empty_container(c);
                            self.remove(c, sub);
                            !before && is_empty_container(c)
                        });
                        if emptied && !self.always_present() {
                            m.remove(&k);
                        }
                        self.pop_field();
                    }
                }
            }
            Value::Array(items) => {
                let lt = self.list_type();
                let pes = self.elements(&lt, items, &mut Vec::new());
                let mut kept = Vec::with_capacity(items.len());
                for (i, (mut item, pe)) in std::mem::take(items).into_iter().zip(pes).enumerate() {
                    let pe = pe.unwrap_or(PathElement::Index(i));
                    if set.is_member(&pe) {
                        continue;
                    }
                    if let Some(sub) = set.child(&pe) {
                        self.path.push(pe);
                        self.remove(&mut item, sub);
                        self.path.pop();
                    }
                    kept.push(item);
                }
                *items = kept;
            }
            _ => {}
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A configuration value with its `null` fields dropped: null means
/// "not set", and the stored object should not carry it.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}
