//! ResourceQuota admission at the point upstream runs it: after the
//! strategy validated a new object, right before it is written. The
//! quota's `status.used` is charged with a compare-and-swap on the quota,
//! so two creates racing for the last unit cannot both pass.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/admission/plugin/
//! resourcequota` (`quotaEvaluator.checkQuotas`, which also writes the
//! charged quotas with optimistic concurrency and retries). A charge is
//! not given back when the write then fails; as upstream, the quota
//! controller's next recalculation corrects it.

use std::sync::Arc;

use futures::future::BoxFuture;
use rkube_api::catalog::ResourceInfo;
use rkube_machinery::StatusError;
use rkube_registry::admission::quota::{charge, update_delta, usage, Usage};
use rkube_registry::{meta, Strategy, Target};
use serde_json::Value;

use super::Admission;

/// Resources quota never counts (upstream's default ignored resources).
fn ignored(info: &ResourceInfo) -> bool {
    !info.namespaced || info.plural == "events"
}

/// `strategy` with quota admission, for the resources quota can count.
pub fn wrap(
    info: &'static ResourceInfo,
    strategy: Arc<dyn Strategy>,
    admission: &Arc<Admission>,
) -> Arc<dyn Strategy> {
    if ignored(info) {
        return strategy;
    }
    Arc::new(QuotaStrategy {
        info,
        inner: strategy,
        admission: admission.clone(),
    })
}

/// A resource's strategy with quota admission before every create, and
/// before the updates that grow what a Service or claim uses.
pub struct QuotaStrategy {
    info: &'static ResourceInfo,
    inner: Arc<dyn Strategy>,
    admission: Arc<Admission>,
}

impl Admission {
    /// Charge every quota of the object's namespace that counts it, or
    /// refuse it. With `dry_run` the quotas are checked, not charged.
    pub async fn charge_quotas(
        &self,
        info: &ResourceInfo,
        obj: &Value,
        used: &Usage,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let ns = meta::namespace(obj);
        let quotas = self
            .quotas
            .under_or_live(&format!("{ns}/"))
            .await
            .map_err(StatusError::internal_error)?;
        if quotas.is_empty() {
            return Ok(());
        }
        let is_pod = info.group.is_empty() && info.plural == "pods";
        let gr = rkube_machinery::GroupResource::new(info.group, info.plural);
        let refuse = |reason: String| StatusError::forbidden(&gr, meta::name(obj), reason);
        // Check every quota against the cached view first, so a refusal
        // the cache already shows charges none of them.
        for q in &quotas {
            charge(q, is_pod, obj, used).map_err(refuse)?;
        }
        // Then charge each against the store's current quota, including
        // those the cached view does not count the object in: the copy may
        // predate the status.hard the quota controller just wrote. A quota
        // that does not count it is left unwritten.
        for name in quotas.iter().map(|q| meta::name(q).to_string()) {
            let result = self
                .quota_store
                .modify(Some(ns), &name, Target::Status, dry_run, |current| {
                    let mut next = current.clone();
                    // No resourceVersion: the store's compare-and-swap
                    // still holds, and a lost race is retried on the
                    // fresh quota, checked again.
                    meta::remove(&mut next, "resourceVersion");
                    if let Some(new_used) = charge(current, is_pod, obj, used).map_err(refuse)? {
                        if let Some(status) = next.get_mut("status").and_then(Value::as_object_mut)
                        {
                            status.insert("used".into(), Value::Object(new_used));
                        }
                    }
                    Ok(next)
                })
                .await;
            match result {
                Ok(_) => {}
                // Deleted since: it counts nothing any more.
                Err(e) if e.reason() == "NotFound" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Strategy for QuotaStrategy {
    super::delegate_to_inner!();

    fn before_create<'a>(
        &'a self,
        obj: &'a mut Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move {
            self.inner.before_create(obj, dry_run).await?;
            let used = usage(self.info.group, self.info.plural, obj);
            let charged = self
                .admission
                .charge_quotas(self.info, obj, &used, dry_run)
                .await;
            if charged.is_err() && !dry_run {
                // Give back what the inner strategy took (a Service's IPs).
                let _ = self.inner.release(&Value::Null, obj).await;
            }
            charged
        })
    }

    fn before_update<'a>(
        &'a self,
        new: &'a mut Value,
        old: &'a Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move {
            self.inner.before_update(new, old, dry_run).await?;
            // Only growth is charged (upstream charges the delta of an
            // update); most updates grow nothing and stop here.
            let grown = update_delta(self.info.group, self.info.plural, new, old);
            if grown.is_empty() {
                return Ok(());
            }
            let charged = self
                .admission
                .charge_quotas(self.info, new, &grown, dry_run)
                .await;
            if charged.is_err() && !dry_run {
                let _ = self.inner.release(old, new).await;
            }
            charged
        })
    }

    fn release<'a>(
        &'a self,
        kept: &'a Value,
        dropped: &'a Value,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        self.inner.release(kept, dropped)
    }
}
