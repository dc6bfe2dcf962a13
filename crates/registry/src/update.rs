//! UPDATE and read-modify-write (PATCH): optimistic concurrency over the
//! store's compare-and-swap.
//!
//! Upstream counterpart: `Store.Update` over `GuaranteedUpdate`. A caller
//! that names a resourceVersion gets 409 Conflict when it is stale; one that
//! does not (PATCH, unconditional PUT) is retried against the latest object.

use rkube_machinery::{FieldError, FieldPath, StatusError};
use rkube_storage::Revision;
use serde_json::Value;

use crate::{meta, storage_error, ResourceStore, Result};

/// Which part of the object an update writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The main resource: everything but status (when it has a status
    /// subresource).
    Main,
    /// The `status` subresource: only status.
    Status,
    /// A namespace's `finalize` subresource: only spec.finalizers.
    Finalize,
    /// A CertificateSigningRequest's `approval` subresource: only
    /// status.conditions.
    Approval,
    /// A pod's `ephemeralcontainers` subresource: only
    /// spec.ephemeralContainers.
    EphemeralContainers,
    /// A server-side subresource that writes spec and status together
    /// (pods/binding sets spec.nodeName and the PodScheduled condition):
    /// the caller's function already applied its rules, so the strategy's
    /// update preparation and validation are skipped.
    Whole,
}

const MAX_RETRIES: usize = 16;

impl ResourceStore {
    /// Replace an object with `obj` (PUT).
    pub async fn update(
        &self,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        target: Target,
        dry_run: bool,
    ) -> Result<Value> {
        self.update_with(namespace, name, target, dry_run, obj, |_, new| new)
            .await
    }

    /// PUT, with `finish(current, new)` run on the object before it is
    /// checked and written (the API server records managedFields there).
    pub async fn update_with<F>(
        &self,
        namespace: Option<&str>,
        name: &str,
        target: Target,
        dry_run: bool,
        obj: Value,
        mut finish: F,
    ) -> Result<Value>
    where
        F: FnMut(&Value, Value) -> Value + Send,
    {
        if !obj.is_object() {
            return Err(StatusError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let body_name = meta::name(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        self.modify(namespace, name, target, dry_run, move |current| {
            Ok(finish(current, obj.clone()))
        })
        .await
    }

    /// Read-modify-write: `f` turns the current object into the desired
    /// one. A resourceVersion in the result is a precondition.
    pub async fn modify<F>(
        &self,
        namespace: Option<&str>,
        name: &str,
        target: Target,
        dry_run: bool,
        mut f: F,
    ) -> Result<Value>
    where
        F: FnMut(&Value) -> Result<Value> + Send,
    {
        let key = self.key(namespace, name);
        for _ in 0..MAX_RETRIES {
            let (kv, _) = self
                .store
                .get(&key, None)
                .await
                .map_err(|e| storage_error(self, name, e))?;
            let Some(kv) = kv else {
                if target == Target::Main && self.strategy.allow_create_on_update() {
                    let mut obj = f(&Value::Null)?;
                    meta::set(&mut obj, "name", name);
                    meta::remove(&mut obj, "resourceVersion");
                    return self.create(namespace, obj, dry_run).await;
                }
                return Err(self.not_found(name));
            };
            let old = self.decode(&kv)?;
            let mut new = f(&old)?;
            match meta::resource_version(&new) {
                "" if !self.strategy.allow_unconditional_update() => {
                    let path = FieldPath::new("metadata").child("resourceVersion");
                    let err = FieldError::invalid(&path, "", "must be specified for an update");
                    return Err(StatusError::invalid(&self.group_kind(), name, &[err]));
                }
                "" => {}
                rv if rv == kv.mod_revision.to_string() => {}
                rv if rv.parse::<Revision>().is_err() => {
                    return Err(StatusError::bad_request(format!(
                        "invalid resourceVersion {rv:?}"
                    )));
                }
                _ => return Err(StatusError::conflict_modified(&self.group_resource(), name)),
            }
            self.check_namespace(namespace, &mut new)?;
            self.prepare_update(&mut new, &old, target);
            let mut errs = crate::create::validate_object_meta(&new, self.name_rule());
            match target {
                Target::Main => errs.extend(self.strategy.validate_update(&new, &old)),
                Target::Whole => {}
                other => errs.extend(self.strategy.validate_target_update(other, &new, &old)),
            }
            self.invalid_if_any(&new, errs)?;
            if meta::equal_ignoring_rv(&new, &old) {
                return Ok(old);
            }
            self.strategy.before_update(&mut new, &old, dry_run).await?;
            if dry_run {
                return Ok(new);
            }
            // The last finalizer removed from an object being deleted: the
            // update is the delete.
            if meta::deletion_timestamp(&new).is_some()
                && meta::finalizers(&new).is_empty()
                && !self.strategy.blocks_deletion(&new)
                && new
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    == 0
            {
                return match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(_) => {
                        // What the update newly took, then what the object held.
                        self.release_after(&old, &new).await;
                        self.release_after(&Value::Null, &old).await;
                        Ok(new)
                    }
                    Err(rkube_storage::Error::Conflict { .. }) => {
                        self.release_after(&old, &new).await;
                        continue;
                    }
                    Err(e) => {
                        self.release_after(&old, &new).await;
                        Err(storage_error(self, name, e))
                    }
                };
            }
            let pinned = !meta::resource_version(&new).is_empty();
            let bytes = self.encode_for_write(&mut new);
            match self.store.update(&key, bytes, kv.mod_revision, None).await {
                Ok(stored) => {
                    meta::set(&mut new, "resourceVersion", stored.mod_revision.to_string());
                    return Ok(new);
                }
                // Someone wrote in between: retry only if the caller did not
                // pin a resourceVersion (then it was ours, and stale).
                Err(rkube_storage::Error::Conflict { .. }) if !pinned => continue,
                Err(rkube_storage::Error::Conflict { .. }) => {
                    return Err(StatusError::conflict_modified(&self.group_resource(), name))
                }
                Err(e) => return Err(storage_error(self, name, e)),
            }
        }
        Err(StatusError::conflict_modified(&self.group_resource(), name))
    }

    /// The stored bytes of `new`, which loses its resourceVersion (the
    /// caller sets the new one). Without a conversion the object is
    /// serialized as it is: `encode` clones it to drop the
    /// resourceVersion, a copy of every object on every write.
    fn encode_for_write(&self, new: &mut Value) -> Vec<u8> {
        meta::remove(new, "resourceVersion");
        match self.conversion {
            None => serde_json::to_vec(new).expect("JSON values always serialize"),
            Some(_) => self.encode(new),
        }
    }

    /// Keep what the server owns and what the target may not change.
    fn prepare_update(&self, new: &mut Value, old: &Value, target: Target) {
        if let Some(map) = new.as_object_mut() {
            map.insert(
                "apiVersion".into(),
                old.get("apiVersion").cloned().unwrap_or(Value::Null),
            );
            map.insert("kind".into(), self.info.kind.into());
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => meta::set(new, field, v.clone()),
                None => meta::remove(new, field),
            }
        }
        meta::set(new, "name", meta::name(old));
        match target {
            Target::Status => {
                // Only status changes through the status subresource. The
                // new status moves over and the old one is not copied: both
                // copies showed in profiles of the kubelets' status writes.
                let status = new.as_object_mut().and_then(|m| m.remove("status"));
                let rv = new
                    .pointer_mut("/metadata/resourceVersion")
                    .map(Value::take);
                let mut merged: serde_json::Map<String, Value> = match old.as_object() {
                    Some(o) => o
                        .iter()
                        .filter(|(k, _)| k.as_str() != "status")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    None => serde_json::Map::new(),
                };
                if let Some(status) = status {
                    merged.insert("status".into(), status);
                }
                let mut merged = Value::Object(merged);
                match rv {
                    Some(rv) => meta::set(&mut merged, "resourceVersion", rv),
                    None => meta::remove(&mut merged, "resourceVersion"),
                }
                *new = merged;
            }
            Target::Finalize => {
                let mut merged = old.clone();
                let finalizers = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or_else(|| Value::Array(vec![]));
                if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("finalizers".into(), finalizers);
                } else if let Some(map) = merged.as_object_mut() {
                    map.insert("spec".into(), serde_json::json!({"finalizers": finalizers}));
                }
                match new.pointer("/metadata/resourceVersion").cloned() {
                    Some(rv) => meta::set(&mut merged, "resourceVersion", rv),
                    None => meta::remove(&mut merged, "resourceVersion"),
                }
                *new = merged;
            }
            Target::Approval => {
                let mut merged = old.clone();
                let conditions = new
                    .pointer("/status/conditions")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                if let Some(map) = merged.as_object_mut() {
                    let status = crate::resources::util::child(map, "status");
                    if conditions.is_null() {
                        status.remove("conditions");
                    } else {
                        status.insert("conditions".into(), conditions);
                    }
                }
                match new.pointer("/metadata/resourceVersion").cloned() {
                    Some(rv) => meta::set(&mut merged, "resourceVersion", rv),
                    None => meta::remove(&mut merged, "resourceVersion"),
                }
                *new = merged;
            }
            Target::EphemeralContainers => {
                let mut merged = old.clone();
                let list = new.pointer("/spec/ephemeralContainers").cloned();
                if let Some(map) = merged.as_object_mut() {
                    let spec = crate::resources::util::child(map, "spec");
                    match list.filter(|l| !l.is_null()) {
                        Some(l) => spec.insert("ephemeralContainers".into(), l),
                        None => spec.remove("ephemeralContainers"),
                    };
                }
                match new.pointer("/metadata/resourceVersion").cloned() {
                    Some(rv) => meta::set(&mut merged, "resourceVersion", rv),
                    None => meta::remove(&mut merged, "resourceVersion"),
                }
                *new = merged;
            }
            Target::Main => self.strategy.prepare_for_update(new, old),
            Target::Whole => {}
        }
        if !matches!(target, Target::Main | Target::Whole) {
            self.strategy.prepare_target_update(target, new);
        }
        let generation = meta::generation(old);
        if self.strategy.tracks_generation() {
            let bumped = if meta::spec_equal(new, old) {
                generation
            } else {
                generation + 1
            };
            meta::set(new, "generation", bumped.max(1));
        } else if generation > 0 {
            meta::set(new, "generation", generation);
        } else {
            meta::remove(new, "generation");
        }
    }
}
