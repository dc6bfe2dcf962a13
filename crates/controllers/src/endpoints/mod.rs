//! Endpoints controller: an Endpoints object for every Service with a
//! selector, listing the selected pods' addresses.
//!
//! Upstream counterpart: `pkg/controller/endpoint`. Ready pods (or every
//! pod, under `publishNotReadyAddresses`) go to `addresses`, the others to
//! `notReadyAddresses`; named target ports are resolved per pod; Services
//! without a selector are left to their users; a deleted Service takes
//! its Endpoints along. Pods, Services and Endpoints come from the shared
//! informers, and an Endpoints object is written only when its subsets,
//! labels or capacity annotation change.

pub mod build;
pub(crate) mod index;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

/// The controllers' one per-key failure backoff, by the path the cluster
/// controllers import it.
pub(crate) use crate::daemonset::common::Backoff;
use crate::informers::Informers;
use build::{desired_endpoints, pod_change_time, up_to_date, OVER_CAPACITY};
use index::{map_selects, PodIndex};

/// Errors of the Endpoints controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing endpoints {0}: {1}")]
    Write(String, #[source] kube::Error),
    #[error("deleting endpoints {0}: {1}")]
    Delete(String, #[source] kube::Error),
}

/// Which Services a pod was last found in, so that a pod whose labels
/// stop matching still triggers the Service it left.
#[derive(Default)]
pub(crate) struct Membership {
    last: Mutex<HashMap<(String, String), Vec<String>>>,
}

impl Membership {
    /// The Services of `pod`'s namespace to sync for a change of `pod`:
    /// those selecting it now and those that did before.
    pub(crate) fn services_for(
        &self,
        pod: &Pod,
        present: bool,
        services: &Store<Service>,
    ) -> Vec<ObjectRef<Service>> {
        let ns = pod.namespace().unwrap_or_default();
        let now: Vec<String> = if present {
            services
                .state()
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                .filter(|s| {
                    let sel = s.spec.as_ref().and_then(|sp| sp.selector.as_ref());
                    sel.is_some_and(|sel| map_selects(sel, pod.metadata.labels.as_ref()))
                })
                .map(|s| s.name_any())
                .collect()
        } else {
            Vec::new()
        };
        let key = (ns.clone(), pod.name_any());
        let mut last = self.last.lock().expect("membership lock");
        let before = if now.is_empty() {
            last.remove(&key)
        } else {
            last.insert(key, now.clone())
        };
        let mut all = now;
        for b in before.into_iter().flatten() {
            if !all.contains(&b) {
                all.push(b);
            }
        }
        all.into_iter()
            .map(|n| ObjectRef::new(&n).within(&ns))
            .collect()
    }
}

struct Ctx {
    client: kube::Client,
    pods: Arc<PodIndex>,
    endpoints: Store<Endpoints>,
    backoff: Backoff,
}

fn key_of<K: kube::Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

async fn sync(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
    else {
        // No selector: the user manages this Service's Endpoints.
        return Ok(Action::await_change());
    };
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .pods(&ns)
        .into_iter()
        .filter(|p| map_selects(&selector, p.metadata.labels.as_ref()))
        .collect();
    let trigger = pods
        .iter()
        .filter_map(|p| pod_change_time(p))
        .chain(svc.metadata.creation_timestamp.clone())
        .max_by_key(|t| t.0);
    let mut want = desired_endpoints(&svc, &pods, trigger);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&ns));
    let result = match current {
        Some(cur) if up_to_date(&cur, &want) => return Ok(Action::await_change()),
        Some(cur) => {
            // Keep what others put on the object; own only our keys.
            let mut annotations = cur.annotations().clone();
            annotations.remove(OVER_CAPACITY);
            annotations.extend(want.annotations().clone());
            want.metadata.annotations = Some(annotations);
            want.metadata.resource_version = cur.metadata.resource_version.clone();
            api.replace(&name, &PostParams::default(), &want).await
        }
        None => api.create(&PostParams::default(), &want).await,
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // The namespace is terminating: nothing may be created there.
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Action::await_change()),
        Err(e) => Err(Error::Write(format!("{ns}/{name}"), e)),
    }
}

/// Delete the Endpoints of Services that are gone.
async fn clean_up_deleted(client: kube::Client, informers: Arc<Informers>) {
    let services = informers.store::<Service>();
    let endpoints = informers.store::<Endpoints>();
    let stream = informers.shared_stream::<Service>();
    futures::pin_mut!(stream);
    while let Some(svc) = stream.next().await {
        let r = ObjectRef::from_obj(&*svc);
        if services.get(&r).is_some() {
            continue;
        }
        let ns = svc.namespace().unwrap_or_default();
        let name = svc.name_any();
        if endpoints.get(&ObjectRef::new(&name).within(&ns)).is_none() {
            continue;
        }
        if let Err(e) = delete_endpoints(&client, &ns, &name).await {
            tracing::warn!(error = %e, "endpoints cleanup failed");
        }
    }
}

async fn delete_endpoints(client: &kube::Client, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Delete(format!("{ns}/{name}"), e)),
    }
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let pods = informers.store::<Pod>();
    let services = informers.store::<Service>();
    let endpoints = informers.store::<Endpoints>();
    for ready in [
        pods.wait_until_ready().await,
        services.wait_until_ready().await,
        endpoints.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    let index = PodIndex::new(pods);
    let membership = Arc::new(Membership::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: index.clone(),
        endpoints: endpoints.clone(),
        backoff: Backoff::default(),
    });
    tokio::spawn(clean_up_deleted(client, informers.clone()));
    let svc_store = services.clone();
    Controller::for_shared_stream(informers.shared_stream::<Service>(), services)
        .watches_shared_stream(informers.shared_stream::<Pod>(), move |pod: Arc<Pod>| {
            index.observe(&pod);
            let present = index.store().get(&ObjectRef::from_obj(&pod)).is_some();
            membership.services_for(&pod, present, &svc_store)
        })
        .watches_shared_stream(
            informers.shared_stream::<Endpoints>(),
            |ep: Arc<Endpoints>| {
                let ns = ep.namespace().unwrap_or_default();
                Some(ObjectRef::<Service>::new(&ep.name_any()).within(&ns))
            },
        )
        .run(
            |svc, ctx: Arc<Ctx>| async move {
                let key = key_of(&*svc);
                let out = sync(svc, ctx.clone()).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |svc, err, ctx| {
                tracing::warn!(service = %key_of(&*svc), error = %err, "endpoints sync failed");
                Action::requeue(ctx.backoff.failed(&key_of(&*svc)))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
pub(crate) mod tests;
