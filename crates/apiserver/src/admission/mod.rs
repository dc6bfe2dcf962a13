//! The admission chain of writes: the plugins that read other objects
//! (Priority, LimitRanger, ResourceQuota, DefaultStorageClass) and the one
//! that needs the requesting user (CertificateSigningRequest's requester).
//!
//! Upstream counterpart: kube-apiserver's default admission plugins —
//! `plugin/pkg/admission/priority`, `limitranger`, `resourcequota` — and
//! `pkg/registry/certificates/certificates/strategy.go`'s
//! `PrepareForCreate` (the requester's identity). Mutating plugins run
//! before the strategy defaults and validates ([`Admission::admit_create`]);
//! ResourceQuota runs after validation, just before the write, through a
//! strategy wrapper ([`quota::QuotaStrategy`]), as upstream's validating
//! admission runs inside the store's create. The decisions themselves are
//! pure functions in [`rkube_registry::admission`]. The users' admission
//! webhooks are [`webhook`]'s.

/// Inside `impl Strategy for` an admission wrapper (quota, webhooks):
/// every method but the write hooks the wrapper adds to (`before_create`,
/// `before_update`, `release`) goes to the strategy it wraps, `self.inner`.
macro_rules! delegate_to_inner {
    () => {
        fn prepare_for_create(&self, obj: &mut serde_json::Value) {
            self.inner.prepare_for_create(obj)
        }

        fn validate(&self, obj: &serde_json::Value) -> Vec<rkube_machinery::FieldError> {
            self.inner.validate(obj)
        }

        fn prepare_for_update(&self, new: &mut serde_json::Value, old: &serde_json::Value) {
            self.inner.prepare_for_update(new, old)
        }

        fn validate_update(
            &self,
            new: &serde_json::Value,
            old: &serde_json::Value,
        ) -> Vec<rkube_machinery::FieldError> {
            self.inner.validate_update(new, old)
        }

        fn tracks_generation(&self) -> bool {
            self.inner.tracks_generation()
        }

        fn allow_create_on_update(&self) -> bool {
            self.inner.allow_create_on_update()
        }

        fn allow_unconditional_update(&self) -> bool {
            self.inner.allow_unconditional_update()
        }

        fn delete_policy(&self) -> rkube_registry::DeletePolicy {
            self.inner.delete_policy()
        }

        fn default_grace_period(&self, obj: &serde_json::Value) -> i64 {
            self.inner.default_grace_period(obj)
        }

        fn return_deleted_object(&self) -> bool {
            self.inner.return_deleted_object()
        }

        fn prepare_for_delete(&self, obj: &mut serde_json::Value) -> bool {
            self.inner.prepare_for_delete(obj)
        }

        fn blocks_deletion(&self, obj: &serde_json::Value) -> bool {
            self.inner.blocks_deletion(obj)
        }

        fn prepare_target_update(
            &self,
            target: rkube_registry::Target,
            new: &mut serde_json::Value,
        ) {
            self.inner.prepare_target_update(target, new)
        }

        fn validate_target_update(
            &self,
            target: rkube_registry::Target,
            new: &serde_json::Value,
            old: &serde_json::Value,
        ) -> Vec<rkube_machinery::FieldError> {
            self.inner.validate_target_update(target, new, old)
        }

        fn grace_period(&self, obj: &serde_json::Value, requested: Option<i64>) -> i64 {
            self.inner.grace_period(obj, requested)
        }

        fn ttl(&self) -> Option<std::time::Duration> {
            self.inner.ttl()
        }
    };
}
pub(crate) use delegate_to_inner;

mod default_storage_class;
mod lister;
pub mod quota;
mod serviceaccount;
mod storage_protection;
#[cfg(test)]
mod tests;
pub mod webhook;

use std::sync::Arc;

use rkube_api::catalog;
use rkube_machinery::StatusError;
use rkube_registry::admission::{aggregate, limits, priority};
use rkube_registry::resources::{pod, strategy_for};
use rkube_registry::{meta, Clock, ResourceStore};
use rkube_storage::Store;
use serde_json::{json, Value};

use crate::User;
use lister::Lister;

/// The group every authenticated user is in.
const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The state the admission plugins read: in-memory copies of the objects
/// they consult on every write, and stores for the reads and writes that
/// must be current.
pub struct Admission {
    priority_classes: Arc<Lister>,
    limit_ranges: Arc<Lister>,
    quotas: Arc<Lister>,
    class_store: Arc<ResourceStore>,
    quota_store: Arc<ResourceStore>,
    /// Read per pod create (one key), for the account's pull secrets.
    account_store: Arc<ResourceStore>,
    /// For DefaultStorageClass.
    storage_classes: Arc<Lister>,
    /// The admission webhooks users configured.
    pub webhooks: Arc<webhook::Webhooks>,
}

fn resource_store(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    group: &str,
    version: &str,
    plural: &str,
) -> Arc<ResourceStore> {
    let info = catalog::lookup(group, version, plural).expect("a built-in resource");
    Arc::new(ResourceStore::new(
        info,
        strategy_for(info),
        store.clone(),
        clock.clone(),
    ))
}

impl Admission {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Admission {
        let class_store =
            resource_store(&store, &clock, "scheduling.k8s.io", "v1", "priorityclasses");
        let quota_store = resource_store(&store, &clock, "", "v1", "resourcequotas");
        let ranges = resource_store(&store, &clock, "", "v1", "limitranges");
        let account_store = resource_store(&store, &clock, "", "v1", "serviceaccounts");
        let storage_classes =
            resource_store(&store, &clock, "storage.k8s.io", "v1", "storageclasses");
        let webhooks = webhook::Webhooks::new(
            store.clone(),
            webhook::Stores {
                validating: resource_store(
                    &store,
                    &clock,
                    "admissionregistration.k8s.io",
                    "v1",
                    "validatingwebhookconfigurations",
                ),
                mutating: resource_store(
                    &store,
                    &clock,
                    "admissionregistration.k8s.io",
                    "v1",
                    "mutatingwebhookconfigurations",
                ),
                namespaces: resource_store(&store, &clock, "", "v1", "namespaces"),
                services: resource_store(&store, &clock, "", "v1", "services"),
                slices: resource_store(&store, &clock, "discovery.k8s.io", "v1", "endpointslices"),
            },
        );
        Admission {
            webhooks: Arc::new(webhooks),
            priority_classes: Lister::new(store.clone(), class_store.list_prefix(None)),
            limit_ranges: Lister::new(store.clone(), ranges.list_prefix(None)),
            storage_classes: Lister::new(store.clone(), storage_classes.list_prefix(None)),
            quotas: Lister::new(store, quota_store.list_prefix(None)),
            class_store,
            quota_store,
            account_store,
        }
    }

    /// The mutating plugins, on an object about to be created in `ns`.
    pub async fn admit_create(
        &self,
        rs: &ResourceStore,
        ns: Option<&str>,
        obj: &mut Value,
        user: Option<&User>,
    ) -> Result<(), StatusError> {
        match (rs.info.group, rs.info.plural) {
            ("", "pods") => self.admit_pod(rs, ns.unwrap_or_default(), obj).await,
            ("", "persistentvolumeclaims") => {
                storage_protection::protect(obj, storage_protection::PVC_FINALIZER);
                default_storage_class::admit(obj, &self.storage_classes)
                    .await
                    .map_err(StatusError::internal_error)?;
                let ranges = self.ranges(ns.unwrap_or_default()).await?;
                let errs = limits::validate_claim(obj, &ranges);
                forbid_if_any(rs, obj, &errs)
            }
            ("", "persistentvolumes") => {
                storage_protection::protect(obj, storage_protection::PV_FINALIZER);
                Ok(())
            }
            ("certificates.k8s.io", "certificatesigningrequests") => {
                record_requester(obj, user);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn ranges(&self, ns: &str) -> Result<Vec<Value>, StatusError> {
        let found = self
            .limit_ranges
            .under(&format!("{ns}/"))
            .await
            .map_err(StatusError::internal_error)?;
        Ok(found.iter().map(|v| (**v).clone()).collect())
    }

    async fn admit_pod(
        &self,
        rs: &ResourceStore,
        ns: &str,
        obj: &mut Value,
    ) -> Result<(), StatusError> {
        // Admission sees the pod as decoded, with its defaults (a limit
        // without a request has become a request too).
        pod::default_pod(obj);
        let ranges = self.ranges(ns).await?;
        if !ranges.is_empty() {
            limits::default_pod(obj, &ranges);
            let errs = limits::validate_pod(obj, &ranges);
            forbid_if_any(rs, obj, &errs)?;
        }
        self.account_pull_secrets(ns, obj).await?;
        let class = self.pod_class(obj).await?;
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        priority::admit(spec, class.as_ref()).map_err(|reason| forbidden(rs, obj, reason))
    }

    /// ServiceAccount admission: a pod without imagePullSecrets gets its
    /// account's. A missing account adds nothing (the pod may come before
    /// the serviceaccount controller made `default`).
    async fn account_pull_secrets(&self, ns: &str, obj: &mut Value) -> Result<(), StatusError> {
        if serviceaccount::has_pull_secrets(obj) {
            return Ok(());
        }
        let Some(name) = serviceaccount::account_of(obj).map(str::to_string) else {
            return Ok(());
        };
        match self.account_store.get(Some(ns), &name, None).await {
            Ok(account) => {
                serviceaccount::copy_pull_secrets(obj, &account);
                Ok(())
            }
            Err(e) if e.reason() == "NotFound" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The PriorityClass a new pod names, or the global default one.
    async fn pod_class(&self, pod: &Value) -> Result<Option<Value>, StatusError> {
        let classes = self
            .priority_classes
            .under("")
            .await
            .map_err(StatusError::internal_error)?;
        let named = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if named.is_empty() {
            let all: Vec<Value> = classes.iter().map(|c| (**c).clone()).collect();
            return Ok(priority::global_default(&all).cloned());
        }
        if let Some(c) = classes.iter().find(|c| meta::name(c) == named) {
            return Ok(Some((**c).clone()));
        }
        // The copy may not have caught up with a class created just now.
        match self.class_store.get(None, named, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.reason() == "NotFound" => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn forbidden(rs: &ResourceStore, obj: &Value, reason: impl std::fmt::Display) -> StatusError {
    StatusError::forbidden(&rs.group_resource(), meta::name(obj), reason)
}

fn forbid_if_any(rs: &ResourceStore, obj: &Value, errs: &[String]) -> Result<(), StatusError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(forbidden(rs, obj, aggregate(errs)))
    }
}

/// A CertificateSigningRequest records who asked for it, whatever the
/// body claimed.
fn record_requester(obj: &mut Value, user: Option<&User>) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    let Some(user) = user else { return };
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.into());
    }
    spec.insert("username".into(), user.name.clone().into());
    spec.insert("groups".into(), json!(groups));
}
