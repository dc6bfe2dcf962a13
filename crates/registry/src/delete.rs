//! DELETE: preconditions, graceful deletion, finalizers and the
//! propagation policy.
//!
//! Upstream counterpart: `Store.Delete`, `rest.BeforeDelete`. An object
//! with finalizers (including the `orphan` and `foregroundDeletion` ones
//! the propagation policy adds) is only marked with a deletionTimestamp;
//! the garbage collector and other controllers finish the job by removing
//! the finalizers, and the update that removes the last one deletes it.

use rkube_machinery::StatusError;
use serde_json::Value;

use rkube_machinery::time::{format_time, TimeDelta};

use crate::{meta, storage_error, DeletePolicy, ResourceStore, Result};

/// How dependents of a deleted object are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// The body of a DELETE (`metav1.DeleteOptions`), already parsed.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a DELETE did.
#[derive(Debug)]
pub enum DeleteOutcome {
    /// The object is gone; this is its last state.
    Deleted(Value),
    /// The object is marked for deletion and still exists.
    Pending(Value),
}

const MAX_RETRIES: usize = 16;

impl ResourceStore {
    pub async fn delete(
        &self,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome> {
        let key = self.key(namespace, name);
        for _ in 0..MAX_RETRIES {
            let (kv, _) = self
                .store
                .get(&key, None)
                .await
                .map_err(|e| storage_error(self, name, e))?;
            let Some(kv) = kv else {
                return Err(self.not_found(name));
            };
            let obj = self.decode(&kv)?;
            self.check_preconditions(&obj, name, opts)?;
            let Some(marked) = self.mark_for_deletion(&obj, opts) else {
                if opts.dry_run {
                    return Ok(DeleteOutcome::Deleted(obj));
                }
                return match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(_) => {
                        self.release_after(&Value::Null, &obj).await;
                        Ok(DeleteOutcome::Deleted(obj))
                    }
                    Err(rkube_storage::Error::Conflict { .. }) => continue,
                    Err(e) => Err(storage_error(self, name, e)),
                };
            };
            if opts.dry_run || meta::equal_ignoring_rv(&marked, &obj) {
                return Ok(DeleteOutcome::Pending(marked));
            }
            match self
                .store
                .update(&key, self.encode(&marked), kv.mod_revision, None)
                .await
            {
                Ok(stored) => {
                    let mut marked = marked;
                    meta::set(
                        &mut marked,
                        "resourceVersion",
                        stored.mod_revision.to_string(),
                    );
                    return Ok(DeleteOutcome::Pending(marked));
                }
                Err(rkube_storage::Error::Conflict { .. }) => continue,
                Err(e) => return Err(storage_error(self, name, e)),
            }
        }
        Err(StatusError::conflict_modified(&self.group_resource(), name))
    }

    /// Give back what a written-away object held (cluster IPs, ports). A
    /// failure leaks the allocation until repair, which is logged, not
    /// returned: the write itself succeeded.
    pub(crate) async fn release_after(&self, kept: &Value, dropped: &Value) {
        if let Err(e) = self.strategy.release(kept, dropped).await {
            tracing::warn!(resource = self.info.plural, name = meta::name(dropped), error = %e.status().message, "releasing allocations failed");
        }
    }

    fn check_preconditions(&self, obj: &Value, name: &str, opts: &DeleteOptions) -> Result<()> {
        if let Some(uid) = &opts.precondition_uid {
            if uid != meta::uid(obj) {
                let msg = format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(obj)
                );
                return Err(StatusError::conflict(&self.group_resource(), name, msg));
            }
        }
        if let Some(rv) = &opts.precondition_resource_version {
            if rv != meta::resource_version(obj) {
                let msg = format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(obj)
                );
                return Err(StatusError::conflict(&self.group_resource(), name, msg));
            }
        }
        Ok(())
    }

    /// The object marked for deletion, or `None` when it can go now.
    fn mark_for_deletion(&self, obj: &Value, opts: &DeleteOptions) -> Option<Value> {
        let mut marked = obj.clone();
        let mut finalizers = meta::finalizers(obj);
        let add = match opts.propagation {
            Some(Propagation::Orphan) => Some("orphan"),
            Some(Propagation::Foreground) => Some("foregroundDeletion"),
            _ => None,
        };
        if let Some(f) = add {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
            }
        }
        if opts.propagation == Some(Propagation::Background) {
            finalizers.retain(|f| f != "orphan" && f != "foregroundDeletion");
        }
        let grace = self.grace_period(obj, opts);
        let held = self.strategy.prepare_for_delete(&mut marked);
        if finalizers.is_empty() && grace == 0 && !held {
            return None;
        }
        meta::set_finalizers(&mut marked, finalizers);
        let now = self.clock.now();
        match (meta::deletion_timestamp(obj), grace) {
            // Already marked: a shorter grace period may still cut it.
            (Some(_), _) => {
                let current = obj
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if current.is_some_and(|c| grace < c) {
                    meta::set(&mut marked, "deletionGracePeriodSeconds", grace);
                    let at = now + TimeDelta::seconds(grace);
                    meta::set(&mut marked, "deletionTimestamp", format_time(&at));
                }
            }
            (None, _) => {
                let at = now + TimeDelta::seconds(grace);
                meta::set(&mut marked, "deletionTimestamp", format_time(&at));
                meta::set(&mut marked, "deletionGracePeriodSeconds", grace);
            }
        }
        Some(marked)
    }

    /// The grace period this delete gets: graceful resources use the
    /// request's or their own default; others none.
    fn grace_period(&self, obj: &Value, opts: &DeleteOptions) -> i64 {
        if self.strategy.delete_policy() != DeletePolicy::Graceful {
            return 0;
        }
        self.strategy
            .grace_period(obj, opts.grace_period_seconds)
            .max(0)
    }
}
