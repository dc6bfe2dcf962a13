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
    /// served this way. Stored objects are compact JSON whose keys sort
    /// `apiVersion`, `kind`, `metadata`, so the first `"metadata":{` is
    /// the object's own. `None` when the bytes do not look like that.
    fn raw_with_rv(kv: &KeyValue) -> Option<Vec<u8>> {
        const META: &[u8] = b"\"metadata\":{";
        let at = kv.value.windows(META.len()).position(|w| w == META)? + META.len();
        let rv = format!("\"resourceVersion\":\"{}\"", kv.mod_revision);
        let mut out = Vec::with_capacity(kv.value.len() + rv.len() + 1);
        out.extend_from_slice(&kv.value[..at]);
        out.extend_from_slice(rv.as_bytes());
        if kv.value.get(at) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(&kv.value[at..]);
        Some(out)
    }

    fn not_found(&self, name: &str) -> StatusError {
        StatusError::not_found(&self.group_resource(), name)
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
