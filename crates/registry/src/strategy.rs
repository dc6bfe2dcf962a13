//! Per-resource rules the generic store applies: defaulting, validation,
//! which fields a write may change, and how deletion behaves.
//!
//! Upstream counterpart: `rest.RESTCreateStrategy`, `RESTUpdateStrategy`,
//! `RESTDeleteStrategy` (e.g. `pkg/registry/core/pod/strategy.go`). The
//! call order lives once, in [`crate::ResourceStore`]; a resource only says
//! what differs. Strategies are pure: they see objects, never the store.

use std::time::Duration;

use futures::future::BoxFuture;
use rkube_machinery::{FieldError, StatusError};
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

    /// Adjust what a subresource update (status, approval, ...) wrote,
    /// after the generic merge kept only what the subresource may change.
    fn prepare_target_update(&self, _target: crate::Target, _new: &mut Value) {}

    /// Field errors of a subresource update.
    fn validate_target_update(
        &self,
        _target: crate::Target,
        _new: &Value,
        _old: &Value,
    ) -> Vec<FieldError> {
        Vec::new()
    }

    /// The grace period a graceful delete of `obj` gets, given the one the
    /// request named (upstream `CheckGracefulDelete`). Pods override it:
    /// an unscheduled or finished pod goes at once whatever was asked.
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> i64 {
        requested.unwrap_or_else(|| self.default_grace_period(obj))
    }

    /// How long objects of this resource live in the store before it
    /// expires them (Events: one hour, kube-apiserver's `--event-ttl`).
    fn ttl(&self) -> Option<Duration> {
        None
    }

    /// Take what a new object needs from shared state (a Service's
    /// cluster IP and node ports) after validation, before the write.
    /// With `dry_run` the allocation is checked, not kept.
    fn before_create<'a>(
        &'a self,
        _obj: &'a mut Value,
        _dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async { Ok(()) })
    }

    /// As [`Strategy::before_create`], for what an update newly needs.
    fn before_update<'a>(
        &'a self,
        _new: &'a mut Value,
        _old: &'a Value,
        _dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async { Ok(()) })
    }

    /// Give back what `dropped` held and `kept` does not: after a delete
    /// (`kept` = Null), after an update (`kept` = new, `dropped` = old),
    /// and to undo a `before_*` whose write failed (`kept` = old or Null,
    /// `dropped` = the object that was not written).
    fn release<'a>(
        &'a self,
        _kept: &'a Value,
        _dropped: &'a Value,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async { Ok(()) })
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
