//! EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for every
//! Service with a selector.
//!
//! Upstream counterpart: `pkg/controller/endpointslice`. Slices carry the
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`
//! labels and a controller ownerReference to their Service (so the
//! garbage collector removes them with it); at most 100 endpoints each;
//! IPv4 only for now. The service proxy reads these slices, so a sync
//! writes only the slices whose content changes (see [`reconcile`]).
//!
//! User-managed Endpoints are mirrored into slices by [`mirroring`],
//! which this controller starts.
//!
//! Like upstream's `EndpointSliceTracker`, the controller remembers what
//! it wrote and waits for the informer cache to catch up before syncing a
//! Service again: a sync over a cache that has not yet seen a slice it
//! just created would create a second one.

pub mod mirroring;
pub mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::endpoints::build::pod_change_time;
use crate::endpoints::index::{map_selects, PodIndex};
use crate::endpoints::{Backoff, Membership};
use crate::informers::Informers;
use reconcile::{
    Snapshot, CONTROLLER_NAME, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL,
};

/// The node label that gives an endpoint its zone.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// How long a write may take to show up in the cache before the
/// controller stops waiting for it.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the EndpointSlice controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating endpoint slice for service {0}: {1}")]
    Create(String, #[source] kube::Error),
    #[error("updating endpoint slice {0}: {1}")]
    Update(String, #[source] kube::Error),
    #[error("deleting endpoint slice {0}: {1}")]
    Delete(String, #[source] kube::Error),
}

/// What a written slice must look like in the cache.
#[derive(Clone, Debug)]
enum Seen {
    /// Present with at least this resourceVersion.
    AtLeast(u64),
    Gone,
}

/// Since when, and which slices in which state, per Service.
type Pending = HashMap<String, (Instant, Vec<(String, Seen)>)>;

/// The writes of one Service the cache has not shown yet.
#[derive(Default)]
struct Expectations {
    pending: Mutex<Pending>,
}

impl Expectations {
    fn expect(&self, svc: &str, slice: String, seen: Seen) {
        let mut map = self.pending.lock().expect("expectations lock");
        let entry = map
            .entry(svc.to_string())
            .or_insert_with(|| (Instant::now(), Vec::new()));
        entry.0 = Instant::now();
        entry.1.push((slice, seen));
    }

    /// Whether the cache shows every write made for `svc` (or they are too
    /// old to wait for).
    fn satisfied(&self, svc: &str, ns: &str, slices: &Store<EndpointSlice>) -> bool {
        let mut map = self.pending.lock().expect("expectations lock");
        let Some((since, list)) = map.get_mut(svc) else {
            return true;
        };
        list.retain(|(name, seen)| {
            let cached = slices.get(&ObjectRef::new(name).within(ns));
            match (seen, cached) {
                (Seen::Gone, None) => false,
                (Seen::AtLeast(rv), Some(s)) => resource_version(&s) < *rv,
                _ => true,
            }
        });
        if list.is_empty() || since.elapsed() > EXPECTATION_TIMEOUT {
            map.remove(svc);
            return true;
        }
        false
    }
}

fn resource_version(slice: &EndpointSlice) -> u64 {
    slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

struct Ctx {
    client: kube::Client,
    pods: Arc<PodIndex>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    expectations: Expectations,
    backoff: Backoff,
}

/// This controller's slices of Service `ns/name` in the cache.
fn owned_slices(store: &Store<EndpointSlice>, ns: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
    store
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .filter(|s| {
            let l = s.labels();
            l.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
                && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME)
        })
        .collect()
}

async fn sync(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let key = format!("{ns}/{name}");
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
    else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !ctx.expectations.satisfied(&key, &ns, &ctx.slices) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .pods(&ns)
        .into_iter()
        .filter(|p| map_selects(&selector, p.metadata.labels.as_ref()))
        .collect();
    let slices = owned_slices(&ctx.slices, &ns, &name);
    let nodes = ctx.nodes.clone();
    let zone_of = move |node: &str| -> Option<String> {
        nodes
            .get(&ObjectRef::new(node))
            .and_then(|n| n.labels().get(ZONE_LABEL).cloned())
    };
    let trigger = pods
        .iter()
        .filter_map(|p| pod_change_time(p))
        .chain(svc.metadata.creation_timestamp.clone())
        .max_by_key(|t| t.0);
    let plan = reconcile::reconcile(&Snapshot {
        service: &svc,
        pods: &pods,
        slices: &slices,
        zone_of: &zone_of,
        trigger,
        max_per_slice: MAX_ENDPOINTS_PER_SLICE,
    });
    apply_plan(&ctx.client, &ctx.expectations, &ns, &key, plan).await
}

/// Write a plan's slices, expecting each write in the cache before the
/// key is synced again. Shared by the EndpointSlice controller and the
/// mirroring controller.
async fn apply_plan(
    client: &kube::Client,
    expectations: &Expectations,
    ns: &str,
    key: &str,
    plan: reconcile::Plan,
) -> Result<Action, Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    for slice in plan.create {
        match api.create(&PostParams::default(), &slice).await {
            Ok(made) => {
                expectations.expect(key, made.name_any(), Seen::AtLeast(resource_version(&made)))
            }
            // Terminating namespace: the slices go with it.
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(Action::await_change()),
            Err(e) => return Err(Error::Create(key.to_string(), e)),
        }
    }
    for slice in plan.update {
        let slice_name = slice.name_any();
        match api
            .replace(&slice_name, &PostParams::default(), &slice)
            .await
        {
            Ok(done) => {
                expectations.expect(key, slice_name, Seen::AtLeast(resource_version(&done)))
            }
            Err(e) => return Err(Error::Update(format!("{ns}/{slice_name}"), e)),
        }
    }
    for slice_name in plan.delete {
        match api.delete(&slice_name, &DeleteParams::default()).await {
            Ok(_) => expectations.expect(key, slice_name, Seen::Gone),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Delete(format!("{ns}/{slice_name}"), e)),
        }
    }
    Ok(Action::await_change())
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let pods = informers.store::<Pod>();
    let services = informers.store::<Service>();
    let slices = informers.store::<EndpointSlice>();
    let nodes = informers.store::<Node>();
    for ready in [
        pods.wait_until_ready().await,
        services.wait_until_ready().await,
        slices.wait_until_ready().await,
        nodes.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    tokio::spawn(mirroring::run(client.clone(), informers.clone()));
    let index = PodIndex::new(pods);
    let membership = Arc::new(Membership::default());
    let ctx = Arc::new(Ctx {
        client,
        pods: index.clone(),
        slices,
        nodes,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let svc_store = services.clone();
    Controller::for_shared_stream(informers.shared_stream::<Service>(), services)
        .watches_shared_stream(informers.shared_stream::<Pod>(), move |pod: Arc<Pod>| {
            index.observe(&pod);
            let present = index.store().get(&ObjectRef::from_obj(&pod)).is_some();
            membership.services_for(&pod, present, &svc_store)
        })
        .watches_shared_stream(
            informers.shared_stream::<EndpointSlice>(),
            |s: Arc<EndpointSlice>| {
                let ns = s.namespace().unwrap_or_default();
                let l = s.labels();
                (l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME))
                    .then(|| l.get(SERVICE_NAME_LABEL))
                    .flatten()
                    .map(|svc| ObjectRef::<Service>::new(svc).within(&ns))
            },
        )
        .run(
            |svc, ctx: Arc<Ctx>| async move {
                let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
                let out = sync(svc, ctx.clone()).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |svc, err, ctx| {
                let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
                tracing::warn!(service = %key, error = %err, "endpoint slice sync failed");
                Action::requeue(ctx.backoff.failed(&key))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
