//! The strategy wrapper that calls the webhooks on create and update,
//! right before the inner strategy's own last step (quota) and the write.
//!
//! Upstream counterpart: the mutating and validating admission steps of
//! `k8s.io/apiserver/pkg/endpoints/handlers/{create,update,patch}.go`
//! (`admit` before the store, `rest.AdmissionToValidateObjectFunc` inside
//! it). Here both run at one point, after validation, and an object a
//! webhook changed is defaulted and validated again, so what is written
//! is valid. (Known difference: an update's generation is judged on the
//! client's change, before the webhooks'.)

use std::sync::Arc;

use futures::future::BoxFuture;
use rkube_api::catalog::ResourceInfo;
use rkube_machinery::{GroupKind, StatusError};
use rkube_registry::{meta, Strategy};
use serde_json::{json, Value};

use super::{admissible, current, Call, Operation, Webhooks};

/// `strategy` with webhook admission, for the resources webhooks may see.
pub fn wrap(
    info: &'static ResourceInfo,
    strategy: Arc<dyn Strategy>,
    webhooks: &Arc<Webhooks>,
) -> Arc<dyn Strategy> {
    if !admissible(info) {
        return strategy;
    }
    Arc::new(WebhookStrategy {
        info,
        inner: strategy,
        webhooks: webhooks.clone(),
    })
}

pub struct WebhookStrategy {
    info: &'static ResourceInfo,
    inner: Arc<dyn Strategy>,
    webhooks: Arc<Webhooks>,
}

impl WebhookStrategy {
    /// Mutate then validate `obj`; `old` is set for updates.
    async fn admit(
        &self,
        operation: Operation,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        // The common case: no webhook configured, or a write outside any
        // request.
        if !self.webhooks.any().await? {
            return Ok(());
        }
        let Some(ctx) = current() else {
            return Ok(());
        };
        let (namespace, name) = (
            meta::namespace(obj).to_string(),
            meta::name(obj).to_string(),
        );
        let options = match operation {
            Operation::Create => "CreateOptions",
            _ => "UpdateOptions",
        };
        let call = Call {
            info: self.info,
            operation,
            subresource: &ctx.subresource,
            namespace: &namespace,
            name: &name,
            user: ctx.user.as_ref(),
            dry_run,
            options: json!({"kind": options, "apiVersion": "meta.k8s.io/v1"}),
            kind: None,
        };
        if self.webhooks.mutate(&call, obj, old).await? {
            self.settle(&ctx.subresource, obj, old)?;
        }
        self.webhooks.validate(&call, Some(obj), old).await
    }

    /// Default and validate an object a mutating webhook changed, as
    /// upstream decodes (defaults) a patched object and validates it
    /// after admission: a container a webhook added gets its defaults.
    fn settle(&self, sub: &str, obj: &mut Value, old: Option<&Value>) -> Result<(), StatusError> {
        let errs = match (old, sub) {
            (None, _) => {
                self.inner.prepare_for_create(obj);
                self.inner.validate(obj)
            }
            (Some(old), "") => {
                self.inner.prepare_for_update(obj, old);
                self.inner.validate_update(obj, old)
            }
            // A subresource's own rules are checked by the store already,
            // on the object as the client sent it.
            (Some(_), _) => Vec::new(),
        };
        if errs.is_empty() {
            return Ok(());
        }
        let gk = GroupKind::new(self.info.group, self.info.kind);
        Err(StatusError::invalid(&gk, meta::name(obj), &errs))
    }
}

impl Strategy for WebhookStrategy {
    crate::admission::delegate_to_inner!();

    fn before_create<'a>(
        &'a self,
        obj: &'a mut Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move {
            self.admit(Operation::Create, obj, None, dry_run).await?;
            self.inner.before_create(obj, dry_run).await
        })
    }

    fn before_update<'a>(
        &'a self,
        new: &'a mut Value,
        old: &'a Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move {
            self.admit(Operation::Update, new, Some(old), dry_run)
                .await?;
            self.inner.before_update(new, old, dry_run).await
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
