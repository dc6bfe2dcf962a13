//! The cluster zone as a pure snapshot: built from Services and
//! EndpointSlices, answering one question at a time.
//!
//! Upstream counterpart: CoreDNS's kubernetes plugin (plugin/kubernetes,
//! the records of the Kubernetes DNS specification): `<svc>.<ns>.svc`
//! A/AAAA to the cluster IPs, headless Services to ready endpoint IPs,
//! `<host>.<svc>.<ns>.svc` per endpoint, `_<port>._<proto>.<svc>...` SRV,
//! ExternalName as CNAME, `<a-b-c-d>.<ns>.pod` (pods insecure), PTR for
//! service and endpoint IPs; NXDOMAIN for names that do not exist and
//! NODATA (NOERROR, no answer) for names that exist without that type.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::wire::{Rdata, Record, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CNAME, TYPE_SOA};

/// TTL of every cluster record, CoreDNS's default for the plugin.
pub const TTL: u32 = 5;

/// How a question was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records of the asked type (or a CNAME standing in for it).
    Records(Vec<Record>),
    /// The name exists but has no records of that type.
    NoData,
    /// The name does not exist in the cluster zone.
    NxDomain,
    /// Not a cluster name: forward it upstream.
    NotOurs,
}

/// The records of the cluster domain at one moment.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    domain: String,
    records: HashMap<String, Vec<Rdata>>,
    /// Every owner name and its ancestors inside the domain: these answer
    /// NODATA rather than NXDOMAIN.
    names: HashSet<String>,
    /// Reverse names we own; others under in-addr.arpa are forwarded.
    reverse: HashMap<String, Vec<Rdata>>,
}

impl Zone {
    /// Builds the zone for `domain` (e.g. `cluster.local`).
    pub fn build(domain: &str, services: &[Service], slices: &[EndpointSlice]) -> Zone {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut zone = Zone {
            domain: domain.clone(),
            ..Default::default()
        };
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            let labels = s.metadata.labels.as_ref();
            let (Some(ns), Some(name)) = (
                s.metadata.namespace.as_deref(),
                labels.and_then(|l| l.get("kubernetes.io/service-name")),
            ) else {
                continue;
            };
            by_service.entry((ns, name.as_str())).or_default().push(s);
        }
        zone.add(domain.clone(), soa(&domain));
        for svc in services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let slices = by_service.get(&(ns, name)).map_or(&[][..], |v| v);
            zone.add_service(ns, name, svc, slices);
        }
        zone
    }

    fn add_service(&mut self, ns: &str, name: &str, svc: &Service, slices: &[&EndpointSlice]) {
        let Some(spec) = svc.spec.as_ref() else {
            return;
        };
        let fqdn = format!("{name}.{ns}.svc.{}", self.domain).to_ascii_lowercase();
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = &spec.external_name {
                let target = target.trim_end_matches('.').to_ascii_lowercase();
                self.add(fqdn, Rdata::Cname(target));
            }
            return;
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            let ips = spec
                .cluster_ips
                .clone()
                .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
                .unwrap_or_default();
            let mut any = false;
            for ip in ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                self.add(fqdn.clone(), addr(ip));
                self.add_reverse(ip, &fqdn);
                any = true;
            }
            if !any {
                // A Service without an allocated IP still exists.
                self.names.insert(fqdn.clone());
                self.add_ancestors(&fqdn);
            }
            for p in spec.ports.iter().flatten() {
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                let srv = Rdata::Srv {
                    priority: 0,
                    weight: 100,
                    port: p.port as u16,
                    target: fqdn.clone(),
                };
                if let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) {
                    self.add(format!("_{pname}._{proto}.{fqdn}"), srv.clone());
                }
                self.add(fqdn.clone(), srv);
            }
            return;
        }
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        self.names.insert(fqdn.clone());
        self.add_ancestors(&fqdn);
        let mut targets = Vec::new();
        for slice in slices {
            for ep in &slice.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !publish_not_ready {
                    continue;
                }
                for ip in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let host = ep
                        .hostname
                        .clone()
                        .unwrap_or_else(|| dashed(ip))
                        .to_ascii_lowercase();
                    let ep_name = format!("{host}.{fqdn}");
                    self.add(fqdn.clone(), addr(ip));
                    self.add(ep_name.clone(), addr(ip));
                    self.add_reverse(ip, &ep_name);
                    targets.push(ep_name);
                }
            }
        }
        targets.sort();
        targets.dedup();
        let weight = (100 / targets.len().max(1)) as u16;
        let mut ports: Vec<(String, String, u16)> = slices
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                Some((p.name.clone().unwrap_or_default(), proto, p.port? as u16))
            })
            .collect();
        ports.sort();
        ports.dedup();
        for (pname, proto, port) in ports {
            for t in &targets {
                let srv = Rdata::Srv {
                    priority: 0,
                    weight,
                    port,
                    target: t.clone(),
                };
                if !pname.is_empty() {
                    self.add(format!("_{pname}._{proto}.{fqdn}"), srv.clone());
                }
                self.add(fqdn.clone(), srv);
            }
        }
    }

    fn add(&mut self, name: String, data: Rdata) {
        self.add_ancestors(&name);
        self.names.insert(name.clone());
        let v = self.records.entry(name).or_default();
        if !v.contains(&data) {
            v.push(data);
        }
    }

    fn add_ancestors(&mut self, name: &str) {
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if parent.len() < self.domain.len() {
                break;
            }
            if !self.names.insert(parent.to_string()) {
                break;
            }
            rest = parent;
        }
    }

    fn add_reverse(&mut self, ip: IpAddr, target: &str) {
        let v = self.reverse.entry(reverse_name(ip)).or_default();
        let data = Rdata::Ptr(target.to_string());
        if !v.contains(&data) {
            v.push(data);
        }
    }

    /// The zone's domain, without trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The SOA record placed in the authority section of negative answers.
    pub fn soa_record(&self) -> Record {
        Record {
            name: self.domain.clone(),
            ttl: TTL,
            data: soa(&self.domain),
        }
    }

    /// Answers `qtype` for `name` (lower-case, no trailing dot).
    pub fn answer(&self, name: &str, qtype: u16) -> Answer {
        if name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa") {
            return match self.reverse.get(name) {
                Some(v) => Answer::Records(select(name, v, qtype)).or_nodata(),
                None => Answer::NotOurs,
            };
        }
        let in_zone = name == self.domain
            || (name.len() > self.domain.len()
                && name.ends_with(&self.domain)
                && name.as_bytes()[name.len() - self.domain.len() - 1] == b'.');
        if !in_zone {
            return Answer::NotOurs;
        }
        if let Some(v) = self.records.get(name) {
            return Answer::Records(select(name, v, qtype)).or_nodata();
        }
        if let Some(ip) = self.pod_ip(name) {
            return Answer::Records(select(name, &[addr(ip)], qtype)).or_nodata();
        }
        if self.names.contains(name) {
            Answer::NoData
        } else {
            Answer::NxDomain
        }
    }

    /// `a-b-c-d.<ns>.pod.<domain>` names the pod with that address.
    fn pod_ip(&self, name: &str) -> Option<IpAddr> {
        let head = name.strip_suffix(&self.domain)?.strip_suffix(".pod.")?;
        let (dashed, ns) = head.split_once('.')?;
        if ns.is_empty() || ns.contains('.') {
            return None;
        }
        if let Ok(v4) = dashed.replace('-', ".").parse::<std::net::Ipv4Addr>() {
            return Some(IpAddr::V4(v4));
        }
        dashed
            .replace('-', ":")
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    }
}

impl Answer {
    fn or_nodata(self) -> Answer {
        match self {
            Answer::Records(v) if v.is_empty() => Answer::NoData,
            other => other,
        }
    }
}

/// The records of `data` matching `qtype`; a CNAME answers every type.
fn select(name: &str, data: &[Rdata], qtype: u16) -> Vec<Record> {
    data.iter()
        .filter(|d| {
            let t = d.rtype();
            qtype == TYPE_ANY || t == qtype || (t == TYPE_CNAME && qtype != TYPE_SOA)
        })
        .map(|d| Record {
            name: name.to_string(),
            ttl: TTL,
            data: d.clone(),
        })
        .collect()
}

fn addr(ip: IpAddr) -> Rdata {
    match ip {
        IpAddr::V4(v) => Rdata::A(v),
        IpAddr::V6(v) => Rdata::Aaaa(v),
    }
}

fn soa(domain: &str) -> Rdata {
    Rdata::Soa {
        mname: format!("ns.dns.{domain}"),
        rname: format!("hostmaster.{domain}"),
        serial: 1,
        refresh: 7200,
        retry: 1800,
        expire: 86400,
        minimum: TTL,
    }
}

/// An endpoint without hostname is named by its dashed address.
fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v) => v.to_string().replace('.', "-"),
        IpAddr::V6(v) => v.to_string().replace(':', "-"),
    }
}

/// The PTR owner name of an address.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v) => {
            let mut s = String::with_capacity(72);
            for b in v.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0x0f, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// Whether A/AAAA was asked (the types the search path probes).
pub fn is_address(qtype: u16) -> bool {
    qtype == TYPE_A || qtype == TYPE_AAAA
}
