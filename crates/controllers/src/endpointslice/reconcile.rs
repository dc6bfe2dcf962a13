//! Which EndpointSlices to create, update and delete for one Service —
//! pure over a snapshot of its pods and its current slices.
//!
//! Upstream counterpart: `staging/src/k8s.io/endpointslice/reconciler.go`
//! (`reconcileByAddressType`, `reconcileByPortMapping`, `finalize`) and
//! `utils.go` (`podToEndpoint`, `newEndpointSlice`). Endpoints are grouped
//! by the ports they expose; within a group, a slice whose endpoints are
//! all still wanted and unchanged is not touched, slices that lost or
//! changed endpoints are rewritten and take new endpoints first, then
//! slices with room, and only then are new slices made. A slice that would
//! be deleted while another is created is rewritten instead, and a Service
//! without endpoints keeps one empty placeholder slice, as upstream.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::ResourceExt;

use crate::endpoints::build::{
    find_port, format_time, is_headless, pod_ip_for, should_pod_be_in_endpoints,
    should_set_hostname, HEADLESS, LAST_CHANGE_TRIGGER_TIME,
};
use crate::endpoints::index::{is_pod_ready, pod_reference};

/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const ADDRESS_TYPE: &str = "IPv4";

/// What one sync does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// New slices (generateName set, no name).
    pub create: Vec<EndpointSlice>,
    /// Rewritten slices, each keeping its name and resourceVersion.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The endpoint for one pod (`podToEndpoint`).
pub fn pod_to_endpoint(pod: &Pod, svc: &Service, ip: String, zone: Option<String>) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    // "ready" is never true for a terminating pod unless the Service
    // publishes not-ready addresses (compatibility with Endpoints).
    let ready = publish || (serving && !terminating);
    let spec = pod.spec.as_ref();
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        zone,
        ..Endpoint::default()
    }
}

/// The ports a pod exposes for the Service: those it can resolve.
fn pod_ports(pod: &Pod, svc: &Service) -> Vec<EndpointPort> {
    let mut ports: Vec<EndpointPort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            find_port(pod, sp).map(|n| EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(n),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
    ports
}

/// A port set as a map key.
fn ports_key(ports: &[EndpointPort]) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

fn slice_ports_key(slice: &EndpointSlice) -> String {
    let mut ports = slice.ports.clone().unwrap_or_default();
    ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
    ports_key(&ports)
}

/// Identity of an endpoint across syncs: its pod, else its address.
fn endpoint_key(ep: &Endpoint) -> String {
    ep.target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_else(|| ep.addresses.join(","))
}

/// The labels every slice of `svc` carries.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.remove(SERVICE_NAME_LABEL);
    labels.remove(MANAGED_BY_LABEL);
    labels.remove(HEADLESS);
    if is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What every slice of one owner looks like (`newEndpointSlice`).
#[derive(Clone, Debug)]
pub struct Template {
    pub namespace: Option<String>,
    pub generate_name: String,
    pub labels: BTreeMap<String, String>,
    pub owner: OwnerReference,
    /// Whether an owner without endpoints keeps one empty slice.
    pub placeholder: bool,
}

impl Template {
    /// The template of a Service's slices.
    pub fn for_service(svc: &Service) -> Template {
        Template {
            namespace: svc.namespace(),
            generate_name: format!("{}-", svc.name_any()),
            labels: slice_labels(svc),
            owner: owner(svc),
            placeholder: true,
        }
    }

    fn new_slice(
        &self,
        ports: Option<Vec<EndpointPort>>,
        endpoints: Vec<Endpoint>,
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(self.generate_name.clone()),
                namespace: self.namespace.clone(),
                labels: Some(self.labels.clone()),
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            address_type: ADDRESS_TYPE.into(),
            endpoints,
            ports,
        }
    }
}

/// Wanted endpoints by port set: key -> (ports, endpoint key -> endpoint).
pub type Groups = BTreeMap<String, (Vec<EndpointPort>, BTreeMap<String, Endpoint>)>;

/// Add `ep` with `ports` to `groups`.
pub fn add_to_groups(groups: &mut Groups, mut ports: Vec<EndpointPort>, ep: Endpoint) {
    ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
    groups
        .entry(ports_key(&ports))
        .or_insert_with(|| (ports, BTreeMap::new()))
        .1
        .insert(endpoint_key(&ep), ep);
}

/// The inputs of one sync.
pub struct Snapshot<'a> {
    pub service: &'a Service,
    /// The Service's selected pods.
    pub pods: &'a [Arc<Pod>],
    /// This controller's current slices of the Service.
    pub slices: &'a [Arc<EndpointSlice>],
    /// The zone of a node (its topology.kubernetes.io/zone label).
    pub zone_of: &'a dyn Fn(&str) -> Option<String>,
    /// Stamped on every written slice.
    pub trigger: Option<Time>,
    pub max_per_slice: usize,
}

/// A slice being rewritten.
struct Rewrite {
    base: Arc<EndpointSlice>,
    endpoints: Vec<Endpoint>,
}

pub fn reconcile(snap: &Snapshot) -> Plan {
    let svc = snap.service;
    let mut desired = Groups::new();
    for pod in snap.pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip_for(pod, false) else {
            continue;
        };
        let zone = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| (snap.zone_of)(n));
        let ep = pod_to_endpoint(pod, svc, ip, zone);
        add_to_groups(&mut desired, pod_ports(pod, svc), ep);
    }
    place(
        desired,
        snap.slices,
        &Template::for_service(svc),
        snap.trigger.as_ref(),
        snap.max_per_slice,
    )
}

/// The writes that turn `slices` into slices holding `desired`, touching
/// as few slices as it can.
pub fn place(
    desired: Groups,
    slices: &[Arc<EndpointSlice>],
    tmpl: &Template,
    trigger: Option<&Time>,
    max_per_slice: usize,
) -> Plan {
    let max = max_per_slice.max(1);
    let labels = tmpl.labels.clone();
    let mut existing: BTreeMap<String, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for s in slices {
        existing
            .entry(slice_ports_key(s))
            .or_default()
            .push(s.clone());
    }
    let mut rewrites: Vec<Rewrite> = Vec::new();
    let mut creates: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
    let mut deletes: Vec<Arc<EndpointSlice>> = Vec::new();
    for (key, (ports, mut wanted)) in desired {
        let mut kept: Vec<(Arc<EndpointSlice>, usize)> = Vec::new();
        let first_rewrite = rewrites.len();
        for slice in existing.remove(&key).unwrap_or_default() {
            let mut changed = slice.labels() != &labels;
            let mut eps = Vec::new();
            for ep in &slice.endpoints {
                match wanted.remove(&endpoint_key(ep)) {
                    Some(want) => {
                        changed |= &want != ep;
                        eps.push(want);
                    }
                    None => changed = true,
                }
            }
            if eps.is_empty() {
                deletes.push(slice);
            } else if changed {
                rewrites.push(Rewrite {
                    base: slice,
                    endpoints: eps,
                });
            } else {
                let len = eps.len();
                kept.push((slice, len));
            }
        }
        let mut left: Vec<Endpoint> = wanted.into_values().collect();
        // New endpoints go to slices being rewritten anyway...
        for rw in rewrites[first_rewrite..].iter_mut() {
            let room = max.saturating_sub(rw.endpoints.len()).min(left.len());
            rw.endpoints.extend(left.drain(..room));
        }
        // ...then whole new slices, and a remainder that fits into an
        // untouched slice with room goes there rather than into a new one.
        while left.len() >= max {
            creates.push((ports.clone(), left.drain(..max).collect()));
        }
        if !left.is_empty() {
            kept.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
            match kept.iter().position(|(_, len)| len + left.len() <= max) {
                Some(i) => {
                    let (slice, _) = kept.remove(i);
                    let mut eps = slice.endpoints.clone();
                    eps.append(&mut left);
                    rewrites.push(Rewrite {
                        base: slice,
                        endpoints: eps,
                    });
                }
                None => creates.push((ports.clone(), std::mem::take(&mut left))),
            }
        }
    }
    // Slices of port sets no longer wanted.
    deletes.extend(existing.into_values().flatten());
    let need_placeholder = tmpl.placeholder
        && rewrites.is_empty()
        && creates.is_empty()
        && slices.len() == deletes.len();
    let mut plan = Plan::default();
    if need_placeholder {
        // Keep one existing placeholder, or make one.
        match deletes
            .iter()
            .position(|s| s.endpoints.is_empty() && s.ports.as_ref().is_none_or(Vec::is_empty))
        {
            Some(i) => {
                let keep = deletes.remove(i);
                if keep.labels() != &labels {
                    rewrites.push(Rewrite {
                        base: keep,
                        endpoints: Vec::new(),
                    });
                }
            }
            None => creates.push((Vec::new(), Vec::new())),
        }
    }
    for (ports, endpoints) in creates {
        let ports = (!ports.is_empty()).then_some(ports);
        match deletes.pop() {
            // Rewriting a slice that would go costs one write, not two.
            Some(old) => {
                let mut s = stamp(tmpl.new_slice(ports, endpoints), trigger);
                s.metadata.name = old.metadata.name.clone();
                s.metadata.generate_name = None;
                s.metadata.resource_version = old.metadata.resource_version.clone();
                plan.update.push(s);
            }
            None => plan
                .create
                .push(stamp(tmpl.new_slice(ports, endpoints), trigger)),
        }
    }
    for rw in rewrites {
        let mut s = (*rw.base).clone();
        s.endpoints = rw.endpoints;
        s.metadata.labels = Some(labels.clone());
        plan.update.push(stamp(s, trigger));
    }
    let mut seen = HashSet::new();
    plan.delete = deletes
        .into_iter()
        .filter_map(|s| s.metadata.name.clone())
        .filter(|n| seen.insert(n.clone()))
        .collect();
    plan
}

fn stamp(mut slice: EndpointSlice, trigger: Option<&Time>) -> EndpointSlice {
    if let Some(t) = trigger {
        slice
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(LAST_CHANGE_TRIGGER_TIME.into(), format_time(t));
    }
    slice
}
