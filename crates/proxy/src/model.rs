//! What the rules are generated from: one entry per Service port with its
//! addresses, policies and endpoints, derived purely from Services and
//! EndpointSlices.
//!
//! Upstream counterpart: pkg/proxy's ServicePort and Endpoint interfaces
//! (servicechangetracker.go, endpointschangetracker.go).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One backend of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Ready endpoints take traffic; others only exist.
    pub ready: bool,
    /// On this node (for the Local traffic policies).
    pub local: bool,
}

/// One port of one Service, with everything its rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name, or its number when unnamed.
    pub port_name: String,
    /// `tcp`, `udp` or `sctp` as nft spells them.
    pub protocol: &'static str,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// ClientIP affinity timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name/proto/port`, unique per Service port; the chain names'
    /// suffix.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace, self.name, self.protocol, self.port_name
        )
    }

    /// Endpoints that take cluster traffic under internalTrafficPolicy.
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.ready && (!self.internal_local || e.local))
            .collect()
    }

    /// Ready endpoints on this node.
    pub fn local_endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.ready && e.local)
            .collect()
    }

    /// Whether anything but the cluster IP reaches this port.
    pub fn has_external(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }
}

/// The Service an EndpointSlice belongs to, as `(namespace, name)`; None
/// for slices the proxy does not use (not IPv4, no service-name label).
pub fn slice_service(s: &EndpointSlice) -> Option<(&str, &str)> {
    if s.address_type != "IPv4" {
        return None;
    }
    let name = s
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/service-name"))?;
    Some((s.metadata.namespace.as_deref()?, name.as_str()))
}

/// Derives the Service ports of `services` (ExternalName and headless
/// Services have none) with endpoints from `slices`; `node` names this
/// node for the Local policies. Sorted by id so rendering is stable.
pub fn service_ports(
    services: &[Service],
    slices: &[EndpointSlice],
    node: &str,
) -> Vec<ServicePort> {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for s in slices {
        if let Some(key) = slice_service(s) {
            by_service.entry(key).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for svc in services {
        let key = (
            svc.metadata.namespace.as_deref().unwrap_or_default(),
            svc.metadata.name.as_deref().unwrap_or_default(),
        );
        let slices = by_service.get(&key).map_or(&[][..], |v| v);
        out.extend(ports_of(svc, slices, node));
    }
    out.sort_by_key(|a| a.id());
    out
}

/// The ports of one Service with endpoints from `slices` (those of this
/// Service), sorted by id.
pub fn ports_of(svc: &Service, slices: &[&EndpointSlice], node: &str) -> Vec<ServicePort> {
    let mut out = Vec::new();
    let (Some(ns), Some(name), Some(spec)) = (
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
        svc.spec.as_ref(),
    ) else {
        return out;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return out;
    }
    let cluster_ips: Vec<Ipv4Addr> = spec
        .cluster_ips
        .clone()
        .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
        .unwrap_or_default()
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if cluster_ips.is_empty() {
        return out;
    }
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let load_balancer_ips: Vec<Ipv4Addr> = if spec.type_.as_deref() == Some("LoadBalancer") {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect()
    } else {
        Vec::new()
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800) as u32
    });
    for p in spec.ports.iter().flatten() {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "UDP" => "udp",
            "SCTP" => "sctp",
            _ => "tcp",
        };
        let pname = p.name.clone().filter(|n| !n.is_empty());
        let mut endpoints = Vec::new();
        for s in slices {
            // The slice port matching this service port by name.
            let Some(port) = s
                .ports
                .iter()
                .flatten()
                .find(|sp| sp.name.clone().filter(|n| !n.is_empty()) == pname)
                .and_then(|sp| sp.port)
            else {
                continue;
            };
            for ep in &s.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                let local = ep.node_name.as_deref() == Some(node);
                for ip in ep.addresses.iter().filter_map(|a| a.parse().ok()) {
                    endpoints.push(Endpoint {
                        ip,
                        port: port as u16,
                        ready,
                        local,
                    });
                }
            }
        }
        endpoints.sort();
        endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
        out.push(ServicePort {
            namespace: ns.to_string(),
            name: name.to_string(),
            port_name: pname.unwrap_or_else(|| p.port.to_string()),
            protocol,
            cluster_ips: cluster_ips.clone(),
            port: p.port as u16,
            node_port: p.node_port.map(|n| n as u16),
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            affinity_timeout,
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            endpoints,
        });
    }
    out.sort_by_key(|a| a.id());
    out
}
