//! Per-resource rules the generic store applies: defaulting, validation,
//! which fields a write may change, and how deletion behaves.
//!
//! Upstream counterpart: `rest.RESTCreateStrategy`, `RESTUpdateStrategy`,
//! `RESTDeleteStrategy` (e.g. `pkg/registry/core/pod/strategy.go`). The
//! call order lives once, in [`crate::ResourceStore`]; a resource only says
//! what differs. Strategies are pure: they see objects, never the store.

use rkube_machinery::FieldError;
use serde_json::Value;

/// How deleting an object goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletePolicy {
    /// Remove at once (unless finalizers hold it).
    Immediate,
    /// Mark with deletionTimestamp and a grace period; the owner of the
    /// object (the kubelet, for pods) removes it with grace 0 when done.
    Graceful,
}

/// The rules of one resource. Every method has the behaviour most
/// resources want; a resource overrides what differs.
pub trait Strategy: Send + Sync + 'static {
    /// Default fields and reset what a create may not set (e.g. status).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Field errors of a new object (beyond the generic metadata checks).
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Carry over from `old` what an update of the main resource may not
    /// change.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Field errors of an update.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Whether `metadata.generation` tracks spec changes for this resource.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Whether an update of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Whether an update without resourceVersion is applied to the latest.
    fn allow_unconditional_update(&self) -> bool {
        true
    }

    fn delete_policy(&self) -> DeletePolicy {
        DeletePolicy::Immediate
    }

    /// The grace period of a graceful delete when the request names none.
    fn default_grace_period(&self, _obj: &Value) -> i64 {
        0
    }

    /// Whether DELETE answers with the object (else a success Status).
    fn return_deleted_object(&self) -> bool {
        false
    }

    /// Called before an object is deleted; returns whether something
    /// besides metadata.finalizers keeps it (namespaces: spec.finalizers),
    /// in which case it is only marked with a deletionTimestamp.
    fn prepare_for_delete(&self, _obj: &mut Value) -> bool {
        false
    }

    /// Whether the object's own state keeps it from being removed once
    /// its metadata.finalizers are gone.
    fn blocks_deletion(&self, _obj: &Value) -> bool {
        false
    }

    /// Fields beyond metadata.name and metadata.namespace that field
    /// selectors may name, with how to read them.
    fn selectable_field(&self, _obj: &Value, _field: &str) -> Option<Option<String>> {
        None
    }
}

/// The rules every resource gets unless it has its own strategy.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultStrategy {
    /// The resource has a `status` subresource: the main resource cannot
    /// change status, and create starts with none.
    pub has_status: bool,
    pub tracks_generation: bool,
    pub allow_create_on_update: bool,
}

impl Strategy for DefaultStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if self.has_status {
            if let Some(map) = obj.as_object_mut() {
                map.remove("status");
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if self.has_status {
            copy_field(new, old, "status");
        }
    }

    fn tracks_generation(&self) -> bool {
        self.tracks_generation
    }

    fn allow_create_on_update(&self) -> bool {
        self.allow_create_on_update
    }
}

/// Set `new.field` to `old.field` (removing it when `old` has none).
pub fn copy_field(new: &mut Value, old: &Value, field: &str) {
    let Some(map) = new.as_object_mut() else {
        return;
    };
    match old.get(field) {
        Some(v) => {
            map.insert(field.to_string(), v.clone());
        }
        None => {
            map.remove(field);
        }
    }
}
