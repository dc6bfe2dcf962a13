//! The Endpoints a Service should have, computed from a snapshot of its
//! pods — pure, so the rules are tested without a server.
//!
//! Upstream counterpart: `syncService` in `pkg/controller/endpoint/
//! endpoints_controller.go` with `podToEndpointAddressForService`,
//! `addEndpointSubset` and `endpoints.RepackSubsets`, and the pod rules
//! from `pkg/controller/util/endpoint` (`ShouldPodBeInEndpoints`,
//! `ShouldSetHostname`) and `podutil.FindPort`, which the EndpointSlice
//! controller uses too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::index::{is_pod_ready, pod_reference};

/// Upstream's cap on the addresses of one Endpoints object; past it the
/// object is truncated and annotated.
pub const MAX_CAPACITY: usize = 1000;
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const HEADLESS: &str = "service.kubernetes.io/headless";
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Whether a pod belongs in a Service's endpoints at all: it has an IP,
/// has not finished for good, and (unless terminating pods are wanted) is
/// not being deleted.
pub(crate) fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    if !has_ip {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    match restart {
        "Never" => phase != "Failed" && phase != "Succeeded",
        "OnFailure" => phase != "Succeeded",
        _ => true,
    }
}

/// Whether the endpoint carries the pod's hostname: the pod asked for one
/// and names this Service as its subdomain.
pub(crate) fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.hostname.as_deref())
        .is_some_and(|h| !h.is_empty())
        && spec.and_then(|s| s.subdomain.as_deref()) == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace()
}

/// The pod port a Service port reaches: the number itself, or the
/// container port of that name and protocol. `None` when the name is
/// not on this pod.
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pod's address of the family the Service serves (its first
/// family; IPv4 when unset).
pub(crate) fn pod_ip_for(pod: &Pod, want_v6: bool) -> Option<String> {
    let status = pod.status.as_ref()?;
    let mut ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .collect();
    if let Some(ip) = status.pod_ip.as_deref() {
        ips.push(ip);
    }
    ips.into_iter()
        .find(|ip| !ip.is_empty() && ip.contains(':') == want_v6)
        .map(str::to_string)
}

pub(crate) fn service_wants_v6(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .is_some_and(|f| f == "IPv6")
}

pub(crate) fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// When a pod last changed in a way endpoints care about: its Ready
/// transition, else its creation.
pub(crate) fn pod_change_time(pod: &Pod) -> Option<Time> {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.clone());
    let mut times = vec![ready, pod.metadata.creation_timestamp.clone()];
    times.push(pod.metadata.deletion_timestamp.clone());
    times.into_iter().flatten().max_by_key(|t| t.0)
}

/// A port as a sortable, comparable key.
type PortKey = (String, i32, String, Option<String>);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone(),
    )
}

/// An address as a sortable, comparable key: IP, then the pod's uid.
type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Addresses by key, each with whether it is ready.
type Addresses = BTreeMap<AddrKey, (EndpointAddress, bool)>;

/// The subsets for `svc` over its namespace's `pods`, repacked so that
/// ports with the same addresses share a subset, and whether they had to
/// be truncated to [`MAX_CAPACITY`] addresses.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses == Some(true);
    let want_v6 = service_wants_v6(svc);
    let ports = spec.ports.clone().unwrap_or_default();
    // Port (or None for a headless Service without ports) -> address -> ready.
    let mut by_port: BTreeMap<Option<PortKey>, Addresses> = BTreeMap::new();
    let mut port_of: BTreeMap<PortKey, EndpointPort> = BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ip_for(pod, want_v6) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            hostname: should_set_hostname(pod, svc)
                .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
                .flatten(),
            target_ref: Some(pod_reference(pod)),
        };
        let ready = tolerate_unready || is_pod_ready(pod);
        let key = addr_key(&address);
        if ports.is_empty() {
            if is_headless(svc) {
                by_port
                    .entry(None)
                    .or_default()
                    .insert(key, (address, ready));
            }
            continue;
        }
        for sp in &ports {
            let Some(number) = find_port(pod, sp) else {
                tracing::debug!(pod = %pod.name_any(), port = ?sp.name, "service port not found on pod");
                continue;
            };
            let ep = EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            };
            let pk = port_key(&ep);
            port_of.insert(pk.clone(), ep);
            by_port
                .entry(Some(pk))
                .or_default()
                .insert(key.clone(), (address.clone(), ready));
        }
    }
    // Repack: ports whose address sets are identical share one subset.
    let mut groups: Vec<(Addresses, BTreeSet<PortKey>)> = Vec::new();
    for (pk, addrs) in by_port {
        match groups.iter_mut().find(|(a, _)| *a == addrs) {
            Some((_, ports)) => {
                ports.extend(pk);
            }
            None => groups.push((addrs, pk.into_iter().collect())),
        }
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(addrs, pks)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = addrs.into_values().partition(|(_, r)| *r);
            let strip = |v: Vec<(EndpointAddress, bool)>| {
                let v: Vec<EndpointAddress> = v.into_iter().map(|(a, _)| a).collect();
                (!v.is_empty()).then_some(v)
            };
            let ports: Vec<EndpointPort> = pks.iter().map(|k| port_of[k].clone()).collect();
            EndpointSubset {
                addresses: strip(ready),
                not_ready_addresses: strip(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    subsets.sort_by_key(|s| {
        s.addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .next()
            .map(addr_key)
    });
    let truncated = truncate(&mut subsets);
    (subsets, truncated)
}

/// Keep at most [`MAX_CAPACITY`] addresses, ready ones first.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |s: &EndpointSubset| {
        s.addresses.as_ref().map_or(0, Vec::len)
            + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
    };
    if subsets.iter().map(count).sum::<usize>() <= MAX_CAPACITY {
        return false;
    }
    let mut budget = MAX_CAPACITY;
    for s in subsets.iter_mut() {
        if let Some(a) = s.addresses.as_mut() {
            a.truncate(budget);
            budget -= a.len();
        }
    }
    for s in subsets.iter_mut() {
        if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(budget);
            budget -= a.len();
        }
    }
    true
}

/// The whole Endpoints object the controller wants for `svc`; `trigger`
/// becomes the last-change-trigger-time annotation.
pub fn desired_endpoints(svc: &Service, pods: &[Arc<Pod>], trigger: Option<Time>) -> Endpoints {
    let (subsets, truncated) = desired_subsets(svc, pods);
    let mut labels = svc.labels().clone();
    // The slices of this Service come from its pods, not from a mirror.
    labels.insert(SKIP_MIRROR.into(), "true".into());
    if is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    } else {
        labels.remove(HEADLESS);
    }
    let mut annotations = BTreeMap::new();
    if truncated {
        annotations.insert(OVER_CAPACITY.to_string(), "truncated".to_string());
    }
    if let Some(t) = trigger {
        annotations.insert(LAST_CHANGE_TRIGGER_TIME.to_string(), format_time(&t));
    }
    Endpoints {
        metadata: ObjectMeta {
            name: Some(svc.name_any()),
            namespace: svc.namespace(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// RFC 3339 with nanoseconds dropped to seconds, as Go's `time.RFC3339Nano`
/// prints a time that has none.
pub(crate) fn format_time(t: &Time) -> String {
    t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether the current object already says what `want` says, so that
/// nothing is written: same subsets, labels, and capacity annotation (the
/// trigger time alone never causes a write).
pub fn up_to_date(current: &Endpoints, want: &Endpoints) -> bool {
    let annotation = |e: &Endpoints| e.annotations().get(OVER_CAPACITY).cloned();
    let subsets = |e: &Endpoints| e.subsets.clone().filter(|s| !s.is_empty());
    subsets(current) == subsets(want)
        && current.labels() == want.labels()
        && annotation(current) == annotation(want)
}
