//! Generic storage of API resources: one [`ResourceStore`] per resource,
//! driven by that resource's [`Strategy`].
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/registry/generic/registry`
//! (the generic `Store`) and `pkg/registry/*` (the strategies). Objects are
//! JSON values; the store keeps them under `/registry/<resource>/<ns>/<name>`
//! without their resourceVersion, which is the store revision and is put
//! back on every read. Errors are `metav1.Status` errors, ready for the
//! HTTP edge.

pub mod admission;
mod convert;
mod create;
mod delete;
pub mod meta;
pub mod project;
mod read;
pub mod resources;
pub mod selectable;
pub mod strategy;
mod update;
mod watch;

use std::sync::Arc;

use rkube_api::catalog::ResourceInfo;
use rkube_machinery::{GroupKind, GroupResource, StatusError};
use rkube_storage::{KeyValue, Store};
use serde_json::Value;

pub use delete::{DeleteOptions, DeleteOutcome, Propagation};
pub use read::{ListOptions, ListPage, RawListPage};
pub use rkube_machinery::time::{Clock, SystemClock};
pub use strategy::{DefaultStrategy, DeletePolicy, Strategy};
pub use update::Target;
pub use watch::{
    InitialEvents, RawObject, WatchEvent, WatchEventType, WatchOptions, WatchStream,
    INITIAL_EVENTS_END,
};

pub type Result<T, E = StatusError> = std::result::Result<T, E>;

/// Stores the objects of one resource.
pub struct ResourceStore {
    pub info: &'static ResourceInfo,
    strategy: Arc<dyn Strategy>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// `/registry/<resource>/`, or `/registry/<group>/<resource>/` for
    /// groups whose resource names could clash with core ones; for a
    /// converted resource, its storage version's.
    prefix: String,
    /// Set when objects are stored in another version than served.
    conversion: Option<&'static dyn convert::Conversion>,
}

/// A predicate over objects, built from label and field selectors by the
/// caller.
pub type Filter = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

impl ResourceStore {
    pub fn new(
        info: &'static ResourceInfo,
        strategy: Arc<dyn Strategy>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> ResourceStore {
        let conversion = convert::for_resource(info.group, info.version, info.plural);
        ResourceStore {
            info,
            strategy,
            store,
            clock,
            prefix: conversion.map_or_else(|| key_prefix(info), |(_, p)| p.to_string()),
            conversion: conversion.map(|(c, _)| c),
        }
    }

    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    /// The current time of the server's clock.
    pub fn now(&self) -> rkube_machinery::time::Timestamp {
        self.clock.now()
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(self.info.group, self.info.plural)
    }

    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(self.info.group, self.info.kind)
    }

    /// The key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.info.namespaced => format!("{}{ns}/{name}", self.prefix),
            _ => format!("{}{name}", self.prefix),
        }
    }

    /// The prefix of every key of a namespace (or of all, with `None`).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.info.namespaced => format!("{}{ns}/", self.prefix),
            _ => self.prefix.clone(),
        }
    }

    fn api_version(&self) -> String {
        if self.info.group.is_empty() {
            self.info.version.to_string()
        } else {
            format!("{}/{}", self.info.group, self.info.version)
        }
    }

    /// An object as stored: without resourceVersion.
    fn encode(&self, obj: &Value) -> Vec<u8> {
        if self.conversion.is_none() {
            if let Some(stored) = AsStored::of(obj) {
                // Written as is, leaving resourceVersion out: a copy of a
                // whole pod to drop one field cost every write more than
                // the encoding.
                return serde_json::to_vec(&stored).expect("JSON values always serialize");
            }
        }
        let mut obj = match self.conversion {
            Some(c) => c.to_storage(obj.clone()),
            None => obj.clone(),
        };
        meta::remove(&mut obj, "resourceVersion");
        serde_json::to_vec(&obj).expect("JSON values always serialize")
    }

    /// A stored object with its resourceVersion.
    fn decode(&self, kv: &KeyValue) -> Result<Value> {
        let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
            StatusError::internal_error(format!("stored object {} is not valid JSON: {e}", kv.key))
        })?;
        if let Some(c) = self.conversion {
            obj = c.to_served(obj);
        }
        meta::set(&mut obj, "resourceVersion", kv.mod_revision.to_string());
        Ok(obj)
    }

    /// A stored object's bytes with its resourceVersion put into its
    /// metadata, without decoding it: lists of thousands of objects are
    /// served this way. The object's own `metadata` is found by scanning
    /// its top-level keys (a ControllerRevision's `data` holds a pod
    /// template whose `metadata` comes first). `None` when the bytes are
    /// not an object with a `metadata` object.
    fn raw_with_rv(kv: &KeyValue) -> Option<Vec<u8>> {
        let at = top_level_object(&kv.value, b"metadata")?;
        Some(splice_rv(&kv.value[..at], &kv.value[at..], kv.mod_revision))
    }

    fn not_found(&self, name: &str) -> StatusError {
        StatusError::not_found(&self.group_resource(), name)
    }
}

/// `head`, which ends just inside the `metadata` object's brace, then the
/// resourceVersion `rev` as that object's first member, then `rest` (the
/// object's members and what follows).
fn splice_rv(head: &[u8], rest: &[u8], rev: rkube_storage::Revision) -> Vec<u8> {
    let rv = format!("\"resourceVersion\":\"{rev}\"");
    let mut out = Vec::with_capacity(head.len() + rv.len() + 1 + rest.len());
    out.extend_from_slice(head);
    out.extend_from_slice(rv.as_bytes());
    if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// An object with a `metadata` object, serialized as the same object
/// without `metadata.resourceVersion`.
struct AsStored<'a> {
    obj: &'a serde_json::Map<String, Value>,
}

impl<'a> AsStored<'a> {
    fn of(obj: &'a Value) -> Option<AsStored<'a>> {
        let obj = obj.as_object()?;
        obj.get("metadata")?.as_object()?;
        Some(AsStored { obj })
    }
}

impl serde::Serialize for AsStored<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.obj.len()))?;
        for (k, v) in self.obj {
            match v {
                Value::Object(md) if k == "metadata" => map.serialize_entry(k, &WithoutRv(md))?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// A `metadata` object without its resourceVersion.
struct WithoutRv<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for WithoutRv<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let len = self.0.len() - usize::from(self.0.contains_key("resourceVersion"));
        let mut map = s.serialize_map(Some(len))?;
        for (k, v) in self.0.iter().filter(|(k, _)| *k != "resourceVersion") {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn key_prefix(info: &ResourceInfo) -> String {
    match info.group {
        ""
        | "apps"
        | "batch"
        | "policy"
        | "rbac.authorization.k8s.io"
        | "coordination.k8s.io"
        | "scheduling.k8s.io"
        | "storage.k8s.io"
        | "networking.k8s.io"
        | "node.k8s.io"
        | "certificates.k8s.io"
        | "admissionregistration.k8s.io"
        | "discovery.k8s.io"
        | "flowcontrol.apiserver.k8s.io" => {
            format!("/registry/{}/", info.plural)
        }
        group => format!("/registry/{group}/{}/", info.plural),
    }
}

/// Map a storage error to the API error a client sees.
pub(crate) fn storage_error(
    rs: &ResourceStore,
    name: &str,
    err: rkube_storage::Error,
) -> StatusError {
    use rkube_storage::Error as E;
    match err {
        E::AlreadyExists { .. } => StatusError::already_exists(&rs.group_resource(), name),
        E::NotFound { .. } => rs.not_found(name),
        E::Conflict { .. } => StatusError::conflict_modified(&rs.group_resource(), name),
        E::Compacted {
            requested,
            compacted,
        } => StatusError::too_old_resource_version(requested, compacted),
        E::TooLarge { .. } => StatusError::request_entity_too_large(&err.to_string()),
        E::FutureRevision { requested, current } => StatusError::timeout(
            &format!("Too large resource version: {requested}, current: {current}"),
            1,
        ),
        other => StatusError::internal_error(other),
    }
}

/// Where the object value of top-level key `name` starts (just after its
/// `{`) in the JSON object `json`, found without decoding it.
fn top_level_object(json: &[u8], name: &[u8]) -> Option<usize> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(json, i);
        if json.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(json, i)?;
        let key = &json[i + 1..key_end - 1];
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(json, i + 1);
        if key == name {
            return (json.get(i) == Some(&b'{')).then_some(i + 1);
        }
        i = skip_ws(json, value_end(json, i)?);
        match json.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The index just past the string starting at `json[start] == '"'`.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match json.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The index just past the value starting at `json[start]`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while json
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}
