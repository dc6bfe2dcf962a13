//! Keeping the rules current on a node: watches on Services and
//! EndpointSlices feed a store indexed by Service and mark the Services
//! they touch; a sync (changes coalesced over a short window) recomputes
//! the ports of those Services only and sends what changed. After a
//! relist (objects may have gone while the watch was down) or a failed
//! sync, everything is recomputed and compared. Nothing is applied until
//! both watches have listed once, so a Service is never briefly without
//! its endpoints.
//!
//! Upstream counterpart: kube-proxy's config package (ServiceConfig,
//! EndpointSliceConfig informers), its change trackers and the
//! BoundedFrequencyRunner.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;

use crate::model::{ports_of, slice_service, Endpoint, ServicePort};
use crate::nft::Nft;
use crate::proxier::Proxier;
use crate::rules::Config;

/// How long changes are gathered before one sync.
const COALESCE: Duration = Duration::from_millis(10);
/// Wait before retrying a failed sync.
const RETRY: Duration = Duration::from_secs(5);

/// What the node's proxy is told at start.
#[derive(Debug, Clone)]
pub struct NodeProxy {
    pub node_name: String,
    pub rules: Config,
    /// The cluster DNS address and where this node's DNS server listens:
    /// port 53 of that Service goes to the local server, which has no pod
    /// behind it.
    pub local_dns: Option<(Ipv4Addr, Ipv4Addr)>,
}

/// Points the cluster DNS Service's port 53 at the node's own server.
pub fn with_local_dns(
    mut ports: Vec<ServicePort>,
    dns: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<ServicePort> {
    if let Some((cluster_ip, local)) = dns {
        for p in ports
            .iter_mut()
            .filter(|p| p.port == 53 && p.cluster_ips.contains(&cluster_ip))
        {
            p.endpoints = vec![Endpoint {
                ip: local,
                port: 53,
                ready: true,
                local: true,
            }];
        }
    }
    ports
}

/// The Services and EndpointSlices seen, slices filed under their
/// Service, and what changed since the last sync.
#[derive(Default)]
pub struct World {
    services: HashMap<String, Service>,
    /// `namespace/service` to slice name to slice.
    slices: HashMap<String, BTreeMap<String, EndpointSlice>>,
    /// `namespace/slice` to the Service it is filed under (its label may
    /// change or go).
    slice_owner: HashMap<String, String>,
    /// Services (`namespace/name`) whose rules may have changed.
    dirty: BTreeSet<String>,
    /// Recompute everything at the next sync.
    full: bool,
    /// Relists in progress and whether each watch has listed once.
    svc_init: Option<Vec<Service>>,
    eps_init: Option<Vec<EndpointSlice>>,
    svc_listed: bool,
    eps_listed: bool,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl World {
    fn put_service(&mut self, s: Service) {
        let k = key(&s.namespace().unwrap_or_default(), &s.name_any());
        self.dirty.insert(k.clone());
        self.services.insert(k, s);
    }

    fn remove_slice(&mut self, ns: &str, name: &str) {
        if let Some(owner) = self.slice_owner.remove(&key(ns, name)) {
            if let Some(m) = self.slices.get_mut(&owner) {
                m.remove(name);
                if m.is_empty() {
                    self.slices.remove(&owner);
                }
            }
            self.dirty.insert(owner);
        }
    }

    fn put_slice(&mut self, s: EndpointSlice) {
        let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
        self.remove_slice(&ns, &name);
        let Some(owner) = slice_service(&s).map(|(n, svc)| key(n, svc)) else {
            return;
        };
        self.slice_owner.insert(key(&ns, &name), owner.clone());
        self.dirty.insert(owner.clone());
        self.slices.entry(owner).or_default().insert(name, s);
    }

    /// Applies one Service watch event.
    pub fn service_event(&mut self, ev: Event<Service>) {
        match ev {
            Event::Apply(s) => self.put_service(s),
            Event::Delete(s) => {
                let k = key(&s.namespace().unwrap_or_default(), &s.name_any());
                self.services.remove(&k);
                self.dirty.insert(k);
            }
            Event::Init => self.svc_init = Some(Vec::new()),
            Event::InitApply(s) => self.svc_init.get_or_insert_with(Vec::new).push(s),
            Event::InitDone => {
                self.services.clear();
                for s in self.svc_init.take().unwrap_or_default() {
                    self.put_service(s);
                }
                self.svc_listed = true;
                self.full = true;
            }
        }
    }

    /// Applies one EndpointSlice watch event.
    pub fn slice_event(&mut self, ev: Event<EndpointSlice>) {
        match ev {
            Event::Apply(s) => self.put_slice(s),
            Event::Delete(s) => {
                self.remove_slice(&s.namespace().unwrap_or_default(), &s.name_any())
            }
            Event::Init => self.eps_init = Some(Vec::new()),
            Event::InitApply(s) => self.eps_init.get_or_insert_with(Vec::new).push(s),
            Event::InitDone => {
                self.slices.clear();
                self.slice_owner.clear();
                for s in self.eps_init.take().unwrap_or_default() {
                    self.put_slice(s);
                }
                self.eps_listed = true;
                self.full = true;
            }
        }
    }

    /// Whether both watches have listed once.
    pub fn ready(&self) -> bool {
        self.svc_listed && self.eps_listed
    }

    /// The ports of the Service `ns/name` key, as this node sees them.
    fn ports(&self, k: &str, node: &NodeProxy) -> Vec<ServicePort> {
        let Some(svc) = self.services.get(k) else {
            return Vec::new();
        };
        let slices: Vec<&EndpointSlice> = self
            .slices
            .get(k)
            .into_iter()
            .flat_map(|m| m.values())
            .collect();
        with_local_dns(ports_of(svc, &slices, &node.node_name), node.local_dns)
    }

    /// What the next sync covers: None for everything, else the changed
    /// Services; with their ports. Clears the change marks.
    pub fn take_changes(
        &mut self,
        node: &NodeProxy,
        everything: bool,
    ) -> (Option<BTreeSet<String>>, Vec<ServicePort>) {
        let dirty = std::mem::take(&mut self.dirty);
        let full = std::mem::take(&mut self.full);
        if everything || full {
            let mut ports: Vec<ServicePort> = self
                .services
                .keys()
                .flat_map(|k| self.ports(k, node))
                .collect();
            ports.sort_by_key(|p| p.id());
            return (None, ports);
        }
        let ports = dirty.iter().flat_map(|k| self.ports(k, node)).collect();
        (Some(dirty), ports)
    }
}

/// Runs the watches and syncs forever.
pub async fn run(client: Client, node: NodeProxy, nft: Arc<dyn Nft>) {
    let world = Arc::new(Mutex::new(World::default()));
    let changed = Arc::new(Notify::new());
    // Boxed: a Service event is twice the size of a slice event.
    enum Ev {
        Svc(Box<Event<Service>>),
        Eps(Box<Event<EndpointSlice>>),
    }
    let svc = watcher::watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|r| r.map(|e| Ev::Svc(Box::new(e))));
    let eps = watcher::watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|r| r.map(|e| Ev::Eps(Box::new(e))));
    let (w, n) = (world.clone(), changed.clone());
    tokio::spawn(async move {
        let mut events = std::pin::pin!(futures::stream::select(svc, eps));
        while let Some(ev) = events.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(error = %e, "proxy: watch");
                    continue;
                }
            };
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                Ev::Svc(e) => w.service_event(*e),
                Ev::Eps(e) => w.slice_event(*e),
            }
            if w.ready() {
                n.notify_one();
            }
        }
    });
    let mut proxier = Proxier::new(node.rules.clone(), nft);
    loop {
        changed.notified().await;
        tokio::time::sleep(COALESCE).await;
        let (services, ports) = world
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_changes(&node, !proxier.in_sync());
        let res = match &services {
            Some(s) => proxier.sync_services(s, &ports),
            None => proxier.sync(&ports),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "proxy: sync failed, retrying with a full resync");
            let n = changed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY).await;
                n.notify_one();
            });
        }
    }
}
