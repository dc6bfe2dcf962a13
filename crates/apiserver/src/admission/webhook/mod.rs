//! Dynamic admission: the webhooks of MutatingWebhookConfigurations and
//! ValidatingWebhookConfigurations are called on the writes their rules
//! cover.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/admission/plugin/webhook`
//! (`mutating/dispatcher.go`, `validating/dispatcher.go`, `generic/
//! webhook.go` `ShouldCallHook`). Where it runs:
//!
//! - create and update (also patch and server-side apply, which end in
//!   one of them): a strategy wrapper ([`strategy::WebhookStrategy`]),
//!   whose `before_create`/`before_update` hooks run after the built-in
//!   admission plugins and the strategy's validation, right before quota
//!   and the write. Mutating webhooks run first, in order, each seeing
//!   the previous one's result; a mutated object is defaulted and
//!   validated again.
//!   Then the validating webhooks, all at once, as upstream.
//! - delete: [`Webhooks::admit_delete`] from the DELETE handlers, with
//!   the stored object as `oldObject`.
//! - connect (pods/exec, attach, portforward): [`Webhooks::admit_connect`]
//!   from the kubelet proxy, with the options object ([`connect`]).
//!
//! The request's user and subresource reach the strategy hooks through a
//! task-local [`RequestContext`] the REST handler sets: the registry's
//! `Strategy` interface knows nothing of requests. Writes made outside a
//! request (the server's own bootstrap) call no webhooks.
//!
//! `matchConditions` are evaluated by a small CEL subset ([`cel`]); an
//! expression outside it is an evaluation error, which failurePolicy
//! decides (Fail: the request fails; Ignore: the webhook is skipped).
//!
//! A mutating webhook with `reinvocationPolicy: IfNeeded` is called once
//! more when a later mutating webhook changed the object after it (only
//! webhooks count here, not built-in plugins, which all run before).
//!
//! Not supported (documented differences): `matchPolicy: Equivalent` only sees
//! the version requested (each resource is served in one version);
//! mutating webhooks see the object after the server's defaulting (and,
//! on create, with uid and creationTimestamp already set); writes through
//! `scale` send the scaled object, not a Scale; `pods/eviction` and
//! `pods/binding` are not sent as CREATEs of their own kinds.
//!
//! Configuration objects (everything of admissionregistration.k8s.io) are
//! never sent to webhooks, so a broken webhook cannot lock itself in.

mod call;
mod cel;
mod connect;
mod matching;
mod review;
mod service;
pub mod strategy;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, Mutex};

use rkube_api::catalog::ResourceInfo;
use rkube_machinery::StatusError;
use rkube_registry::{meta, ResourceStore};
use serde_json::{json, Map, Value};

use super::lister::Lister;
use crate::User;
pub use connect::connect_options;
pub use matching::Operation;
use matching::{Attributes, Hook};
use review::Verdict;

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// What the webhooks are told about the request beyond its object.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    pub user: Option<User>,
    /// The URL's subresource, empty for the resource itself.
    pub subresource: String,
    /// What the webhooks warned of, for the response's Warning headers.
    pub warnings: Arc<Mutex<Vec<String>>>,
}

/// The warnings the webhooks of a request gave, taken out of its
/// [`RequestContext::warnings`].
pub fn take_warnings(warnings: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *warnings.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Run `f` (a request's handling) with `ctx` visible to the admission
/// hooks it reaches.
pub async fn scope<F: Future>(ctx: RequestContext, f: F) -> F::Output {
    REQUEST.scope(ctx, f).await
}

fn current() -> Option<RequestContext> {
    REQUEST.try_with(Clone::clone).ok()
}

/// Whether objects of this resource may be sent to webhooks.
pub fn admissible(info: &ResourceInfo) -> bool {
    info.group != "admissionregistration.k8s.io"
}

/// One admission decision's request.
struct Call<'a> {
    info: &'a ResourceInfo,
    operation: Operation,
    subresource: &'a str,
    namespace: &'a str,
    name: &'a str,
    user: Option<&'a User>,
    dry_run: bool,
    options: Value,
    /// The kind sent, when not the resource's own (CONNECT's options).
    kind: Option<(&'static str, &'static str, &'static str)>,
}

/// The webhook configurations, and what calling them needs.
pub struct Webhooks {
    validating: Arc<Lister>,
    mutating: Arc<Lister>,
    namespaces: Arc<Lister>,
    namespace_store: Arc<ResourceStore>,
    services: Arc<ResourceStore>,
    slices: Arc<ResourceStore>,
    tls: call::TlsConfigs,
}

/// The stores the webhooks read.
pub struct Stores {
    pub validating: Arc<ResourceStore>,
    pub mutating: Arc<ResourceStore>,
    pub namespaces: Arc<ResourceStore>,
    pub services: Arc<ResourceStore>,
    pub slices: Arc<ResourceStore>,
}

impl Webhooks {
    pub fn new(store: Arc<dyn rkube_storage::Store>, stores: Stores) -> Webhooks {
        let lister = |rs: &ResourceStore| Lister::new(store.clone(), rs.list_prefix(None));
        Webhooks {
            validating: lister(&stores.validating),
            mutating: lister(&stores.mutating),
            namespaces: lister(&stores.namespaces),
            namespace_store: stores.namespaces,
            services: stores.services,
            slices: stores.slices,
            tls: call::TlsConfigs::default(),
        }
    }

    /// The configurations of one kind; an empty list is the common case
    /// and costs a look at an in-memory map.
    async fn configs(&self, mutating: bool) -> Result<Vec<Arc<Value>>, StatusError> {
        let lister = if mutating {
            &self.mutating
        } else {
            &self.validating
        };
        lister.under("").await.map_err(StatusError::internal_error)
    }

    /// The webhooks of one kind the request goes to: rules, then selectors.
    async fn hooks(
        &self,
        mutating: bool,
        call: &Call<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Vec<Hook>, StatusError> {
        let configs = self.configs(mutating).await?;
        if configs.is_empty() {
            return Ok(Vec::new());
        }
        let attrs = Attributes {
            operation: call.operation,
            group: call.info.group,
            version: call.info.version,
            resource: call.info.plural,
            subresource: call.subresource,
            namespaced: call.info.namespaced,
        };
        let mut hooks = Vec::new();
        let mut ns_labels: Option<Option<Map<String, Value>>> = None;
        for hook in matching::candidates(&configs, &attrs) {
            let selector_error = |e: String| review::call_failed(hook.name(), e);
            if !matching::object_selected(&hook.spec, object, old).map_err(selector_error)? {
                continue;
            }
            if matching::needs_namespace(&hook.spec) {
                if ns_labels.is_none() {
                    ns_labels = Some(self.namespace_labels(call, object.or(old)).await?);
                }
                let labels = ns_labels.as_ref().and_then(Option::as_ref);
                let is_cluster_object = labels.is_none();
                if !is_cluster_object
                    && !matching::namespace_selected(&hook.spec, labels).map_err(selector_error)?
                {
                    continue;
                }
            }
            if !self.conditions_hold(&hook, call, object, old)? {
                continue;
            }
            hooks.push(hook);
        }
        Ok(hooks)
    }

    /// The webhook's matchConditions: any false skips it; an error (none
    /// false) fails the request under failurePolicy Fail, skips the
    /// webhook under Ignore.
    fn conditions_hold(
        &self,
        hook: &Hook,
        call: &Call<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<bool, StatusError> {
        let conditions = hook.spec.get("matchConditions").and_then(Value::as_array);
        let Some(conditions) = conditions.filter(|c| !c.is_empty()) else {
            return Ok(true);
        };
        let review = review::review(&self.review_request(call, String::new(), object, old));
        let mut vars = Map::new();
        vars.insert("object".into(), object.cloned().unwrap_or(Value::Null));
        vars.insert("oldObject".into(), old.cloned().unwrap_or(Value::Null));
        vars.insert("request".into(), review["request"].clone());
        let mut failed = None;
        for c in conditions {
            let expr = c.get("expression").and_then(Value::as_str).unwrap_or("");
            match cel::eval_bool(expr, &vars) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) if failed.is_none() => {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    failed = Some(format!("match condition {name:?}: {e}"));
                }
                Err(_) => {}
            }
        }
        match failed {
            None => Ok(true),
            Some(e) if fails_closed(&hook.spec) => Err(review::call_failed(
                hook.name(),
                format!("failed to evaluate match conditions: {e}"),
            )),
            Some(e) => {
                tracing::warn!(webhook = hook.name(), error = %e, "skipping webhook: match condition error");
                Ok(false)
            }
        }
    }

    /// The review request of `call` with `uid`.
    fn review_request<'a>(
        &self,
        call: &'a Call<'a>,
        uid: String,
        object: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> review::Request<'a> {
        let info = call.info;
        review::Request {
            uid,
            operation: call.operation,
            kind: call.kind.unwrap_or((info.group, info.version, info.kind)),
            resource: (info.group, info.version, info.plural),
            subresource: call.subresource,
            name: call.name,
            namespace: call.namespace,
            user: call.user,
            object,
            old_object: old,
            dry_run: call.dry_run,
            options: Some(call.options.clone()),
        }
    }

    /// The labels the namespaceSelector is matched against: a Namespace's
    /// own, the object's namespace's, or `None` for other cluster-scoped
    /// objects.
    async fn namespace_labels(
        &self,
        call: &Call<'_>,
        object: Option<&Value>,
    ) -> Result<Option<Map<String, Value>>, StatusError> {
        let labels_of = |o: &Value| {
            o.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        if call.info.group.is_empty() && call.info.plural == "namespaces" {
            return Ok(Some(object.map(labels_of).unwrap_or_default()));
        }
        if !call.info.namespaced {
            return Ok(None);
        }
        let cached = self
            .namespaces
            .under(call.namespace)
            .await
            .map_err(StatusError::internal_error)?;
        if let Some(ns) = cached.iter().find(|n| meta::name(n) == call.namespace) {
            return Ok(Some(labels_of(ns)));
        }
        // Not in the copy yet (created a moment ago): ask the store.
        match self.namespace_store.get(None, call.namespace, None).await {
            Ok(ns) => Ok(Some(labels_of(&ns))),
            Err(e) if e.reason() == "NotFound" => Ok(Some(Map::new())),
            Err(e) => Err(e),
        }
    }

    /// Run the mutating webhooks on `obj`; whether any changed it.
    async fn mutate(
        &self,
        call: &Call<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<bool, StatusError> {
        let hooks = self.hooks(true, call, Some(obj), old).await?;
        let mut changed = false;
        // The object as each reinvocable (IfNeeded) webhook left it.
        let mut left = Vec::new();
        for hook in &hooks {
            let called = self.mutate_once(hook, call, obj, old).await?;
            changed |= called == Some(true);
            if called.is_some() && reinvocable(&hook.spec) {
                left.push((hook, obj.clone()));
            }
        }
        // reinvocationPolicy IfNeeded: once more, in order, for those
        // whose result a later webhook changed (upstream reinvokes once).
        if changed {
            for (hook, seen) in left {
                if *obj != seen {
                    changed |= self.mutate_once(hook, call, obj, old).await? == Some(true);
                }
            }
        }
        Ok(changed)
    }

    /// Call one mutating webhook and apply its patch: whether it changed
    /// the object, `None` when it was not called (failed, Ignore).
    async fn mutate_once(
        &self,
        hook: &Hook,
        call: &Call<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<Option<bool>, StatusError> {
        let Some(verdict) = self.invoke(hook, call, Some(obj), old).await? else {
            return Ok(None);
        };
        match verdict {
            Verdict::Denied(e) => Err(e),
            Verdict::Allowed {
                patch: Some(patch), ..
            } => match review::apply_patch(obj, &patch) {
                Ok(next) => {
                    let changed = next != *obj;
                    *obj = next;
                    Ok(Some(changed))
                }
                Err(e) if fails_closed(&hook.spec) => Err(review::call_failed(hook.name(), e)),
                Err(e) => {
                    tracing::warn!(webhook = hook.name(), error = %e, "ignoring a webhook's patch");
                    Ok(Some(false))
                }
            },
            Verdict::Allowed { patch: None, .. } => Ok(Some(false)),
        }
    }

    /// Run the validating webhooks, all at once; the first denial or
    /// failure in their order wins.
    async fn validate(
        &self,
        call: &Call<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), StatusError> {
        let hooks = self.hooks(false, call, object, old).await?;
        let results =
            futures::future::join_all(hooks.iter().map(|h| self.invoke(h, call, object, old)))
                .await;
        for result in results {
            if let Some(Verdict::Denied(e)) = result? {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Call one webhook. `None` when the call failed and its
    /// failurePolicy is Ignore.
    async fn invoke(
        &self,
        hook: &Hook,
        call: &Call<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Option<Verdict>, StatusError> {
        let name = hook.name();
        if call.dry_run && !dry_run_safe(&hook.spec) {
            return Err(StatusError::bad_request(format!(
                "admission webhook {name:?} does not support dry run"
            )));
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let req = self.review_request(call, uid.clone(), object, old);
        let body =
            serde_json::to_vec(&review::review(&req)).map_err(StatusError::internal_error)?;
        let outcome = async {
            let limit = call::timeout(&hook.spec);
            let target = self.target(&hook.spec, limit).await?;
            let ca = hook
                .spec
                .pointer("/clientConfig/caBundle")
                .and_then(Value::as_str)
                .unwrap_or("");
            let tls = self.tls.get(ca)?;
            let answer = call::post(tls, &target, body, limit).await?;
            review::verdict(name, &uid, &answer).map_err(|e| call::Error::Resolve(e.to_string()))
        }
        .await;
        match outcome {
            Ok(verdict) => {
                if let (Verdict::Allowed { warnings, .. }, Some(ctx)) = (&verdict, current()) {
                    let mut kept = ctx.warnings.lock().unwrap_or_else(|p| p.into_inner());
                    kept.extend(warnings.iter().cloned());
                }
                Ok(Some(verdict))
            }
            Err(e) if fails_closed(&hook.spec) => Err(review::call_failed(name, e)),
            Err(e) => {
                tracing::warn!(webhook = name, configuration = hook.config, error = %e, "failed calling webhook, failing open");
                Ok(None)
            }
        }
    }

    /// Whether any webhook is configured at all: two looks at in-memory
    /// maps, the whole cost of this plugin while nobody uses it.
    pub async fn any(&self) -> Result<bool, StatusError> {
        let mutating = self.mutating.is_empty().await;
        Ok(self.any_validating().await? || !mutating.map_err(StatusError::internal_error)?)
    }

    /// Whether any validating webhook is configured.
    async fn any_validating(&self) -> Result<bool, StatusError> {
        let empty = self.validating.is_empty().await;
        Ok(!empty.map_err(StatusError::internal_error)?)
    }

    /// DELETE of `old` (already read): the validating webhooks.
    pub async fn admit_delete(
        &self,
        info: &ResourceInfo,
        old: &Value,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        if !admissible(info) || !self.any_validating().await? {
            return Ok(());
        }
        let ctx = current().unwrap_or_default();
        let call = Call {
            info,
            operation: Operation::Delete,
            subresource: "",
            namespace: meta::namespace(old),
            name: meta::name(old),
            user: ctx.user.as_ref(),
            dry_run,
            options: json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
            kind: None,
        };
        self.validate(&call, None, Some(old)).await
    }

    /// DELETE of the object `name` in `rs`: read it for the validating
    /// webhooks when there are any. A missing object is left to the
    /// delete to report.
    pub async fn admit_delete_named(
        &self,
        rs: &ResourceStore,
        namespace: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        if !admissible(rs.info) || !self.any_validating().await? {
            return Ok(());
        }
        match rs.get(namespace, name, None).await {
            Ok(old) => self.admit_delete(rs.info, &old, dry_run).await,
            Err(e) if e.reason() == "NotFound" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// failurePolicy Fail (the default) rather than Ignore.
fn fails_closed(spec: &Value) -> bool {
    spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore")
}

/// reinvocationPolicy IfNeeded (the default is Never).
fn reinvocable(spec: &Value) -> bool {
    spec.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded")
}

/// Whether the webhook may be called on a dry run.
fn dry_run_safe(spec: &Value) -> bool {
    matches!(
        spec.get("sideEffects").and_then(Value::as_str),
        Some("None" | "NoneOnDryRun")
    )
}
