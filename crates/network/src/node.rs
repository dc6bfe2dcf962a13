//! The agent side of the network between nodes: waits for this node's
//! podCIDR (from the node-ipam controller) to set up the bridge, publishes
//! this node's VTEP and address as Node annotations, and programs a route
//! (plus, under VXLAN, a neighbour and a forwarding entry) to every other
//! node's podCIDR as Nodes come and go.
//!
//! Upstream counterpart: flannel's kube subnet manager
//! (`pkg/subnet/kube`, the `flannel.alpha.coreos.com/*` annotations) and
//! its `vxlan` and `host-gw` backends (VNI 1, UDP port 8472).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};

use crate::bridge::BridgeNetwork;
use crate::cmd::{ensure, Ip};
use crate::{routes, Error};

pub const ANN_PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const ANN_BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const ANN_BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
/// The VXLAN device, its VNI and port (flannel's `flannel.1`, 1, 8472).
pub const VTEP: &str = "rkube.1";
pub const VNI: u32 = 1;
pub const VXLAN_PORT: u16 = 8472;

/// How traffic reaches other nodes' pods (`--network-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Vxlan,
    HostGw,
    /// Standard CNI plugins attach pods (see [`crate::cni`]).
    Cni,
    /// No pod network: pods get loopback only (k3s' `--flannel-backend=none`).
    None,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "cni" => Ok(Backend::Cni),
            "none" => Ok(Backend::None),
            _ => Err(format!(
                "unknown network backend {s:?} (vxlan, host-gw, cni, none)"
            )),
        }
    }
}

impl Backend {
    /// Pods' MTU: VXLAN's header takes 50 bytes of the links' 1500.
    pub fn mtu(self) -> u32 {
        match self {
            Backend::Vxlan => 1450,
            _ => 1500,
        }
    }
}

/// This node's network settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub backend: Backend,
    pub cluster_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
}

/// Another node as its annotations and spec describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: Option<String>,
}

/// Reads a peer from a Node; `None` until it has a podCIDR and address.
pub fn peer_of(node: &Node) -> Option<Peer> {
    let ann = node.metadata.annotations.as_ref()?;
    let pod_cidr = node.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
    let public_ip = ann.get(ANN_PUBLIC_IP)?.parse().ok()?;
    let vtep_mac = ann
        .get(ANN_BACKEND_DATA)
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v.get("VtepMAC")?.as_str().map(str::to_string));
    Some(Peer {
        name: node.metadata.name.clone()?,
        pod_cidr,
        public_ip,
        vtep_mac,
    })
}

/// The commands that make `peer`'s pods reachable (pure, for tests).
pub fn peer_commands(backend: Backend, peer: &Peer) -> Vec<(&'static str, Vec<String>)> {
    let cidr = peer.pod_cidr.trunc().to_string();
    let ip = peer.public_ip.to_string();
    match backend {
        Backend::None | Backend::Cni => vec![],
        Backend::HostGw => vec![(
            "ip",
            ["route", "replace", &cidr, "via", &ip]
                .map(String::from)
                .to_vec(),
        )],
        Backend::Vxlan => {
            let Some(mac) = &peer.vtep_mac else {
                return vec![];
            };
            // The peer's VTEP holds its podCIDR's network address.
            let gw = peer.pod_cidr.network().to_string();
            vec![
                (
                    "ip",
                    [
                        "neigh",
                        "replace",
                        &gw,
                        "lladdr",
                        mac,
                        "dev",
                        VTEP,
                        "nud",
                        "permanent",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                (
                    "bridge",
                    [
                        "fdb",
                        "replace",
                        mac,
                        "dev",
                        VTEP,
                        "dst",
                        &ip,
                        "self",
                        "permanent",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                (
                    "ip",
                    ["route", "replace", &cidr, "via", &gw, "dev", VTEP, "onlink"]
                        .map(String::from)
                        .to_vec(),
                ),
            ]
        }
    }
}

/// Creates this node's VTEP; returns its MAC address.
fn setup_vtep(ip: &dyn Ip, cfg: &NodeConfig, pod_cidr: Ipv4Net) -> Result<String, Error> {
    let local = cfg.node_ip.to_string();
    let (vni, port) = (VNI.to_string(), VXLAN_PORT.to_string());
    ensure(
        ip,
        None,
        "ip",
        &[
            "link",
            "add",
            VTEP,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dstport",
            &port,
            "nolearning",
        ],
    )?;
    let addr = format!("{}/32", pod_cidr.network());
    ip.run(None, "ip", &["addr", "replace", &addr, "dev", VTEP])?;
    ip.run(None, "ip", &["link", "set", VTEP, "up"])?;
    let out = ip.run(None, "ip", &["-j", "link", "show", VTEP])?;
    Ok(serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v.get(0)?.get("address")?.as_str().map(str::to_string))
        .unwrap_or_default())
}

/// Runs the node's network until the watch ends for good.
pub async fn run(
    client: kube::Client,
    cfg: NodeConfig,
    net: Arc<BridgeNetwork>,
    ip: Arc<dyn Ip>,
) -> Result<(), Error> {
    routes::unreachable(ip.as_ref(), &[cfg.cluster_cidr, cfg.service_cidr])?;
    if let Err(e) = routes::masquerade(ip.as_ref(), cfg.cluster_cidr) {
        tracing::warn!(error = %e, "pod egress masquerading not set up");
    }
    let api: Api<Node> = Api::all(client);
    let (store, writer) = reflector::store::<Node>();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).default_backoff();
    futures::pin_mut!(stream);
    let mut published = false;
    let mut programmed: BTreeMap<String, Peer> = BTreeMap::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Err(e) => {
                tracing::warn!(error = %e, "node watch");
                continue;
            }
            // The store takes a (re-)list's objects only at InitDone; an
            // agent restarting on an existing Node sees nothing but the
            // list, so InitDone must count (touched_objects skips it).
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Ok(_) => {}
        }
        let nodes = store.state();
        let me = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(cfg.node_name.as_str()));
        let own_cidr = me.and_then(|n| n.spec.as_ref()?.pod_cidr.as_ref()?.parse::<Ipv4Net>().ok());
        let Some(own_cidr) = own_cidr else {
            continue;
        };
        if !published {
            match publish(&api, ip.as_ref(), &cfg, &net, own_cidr).await {
                Ok(()) => published = true,
                Err(e) => {
                    tracing::warn!(error = %e, "pod network setup");
                    continue;
                }
            }
        }
        let peers: BTreeMap<String, Peer> = nodes
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(cfg.node_name.as_str()))
            .filter_map(|n| peer_of(n))
            .map(|p| (p.name.clone(), p))
            .collect();
        for (name, p) in &peers {
            if programmed.get(name) == Some(p) {
                continue;
            }
            let mut ok = true;
            for (prog, args) in peer_commands(cfg.backend, p) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                if let Err(e) = ip.run(None, prog, &args) {
                    tracing::warn!(peer = %name, error = %e, "route to peer");
                    ok = false;
                }
            }
            if ok {
                programmed.insert(name.clone(), p.clone());
            }
        }
        let gone: Vec<String> = programmed
            .keys()
            .filter(|k| !peers.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            let p = programmed.remove(&name).unwrap();
            let cidr = p.pod_cidr.trunc().to_string();
            let _ = ensure(ip.as_ref(), None, "ip", &["route", "del", &cidr]);
        }
    }
    Ok(())
}

async fn publish(
    api: &Api<Node>,
    ip: &dyn Ip,
    cfg: &NodeConfig,
    net: &BridgeNetwork,
    own_cidr: Ipv4Net,
) -> Result<(), Error> {
    net.set_pod_cidr(own_cidr)?;
    if matches!(cfg.backend, Backend::Vxlan | Backend::HostGw) {
        let gateway = crate::ipam::first_host(own_cidr);
        routes::host_service_access(ip, cfg.service_cidr, crate::bridge::BRIDGE, gateway)?;
    }
    let (kind, data) = match cfg.backend {
        Backend::Vxlan => {
            let mac = setup_vtep(ip, cfg, own_cidr)?;
            ("vxlan", serde_json::json!({"VNI": VNI, "VtepMAC": mac}))
        }
        Backend::HostGw => ("host-gw", serde_json::json!(null)),
        Backend::None => ("none", serde_json::json!(null)),
        Backend::Cni => ("cni", serde_json::json!(null)),
    };
    let patch = serde_json::json!({"metadata": {"annotations": {
        ANN_PUBLIC_IP: cfg.node_ip.to_string(),
        ANN_BACKEND_TYPE: kind,
        ANN_BACKEND_DATA: data.to_string(),
    }}});
    if let Err(e) = api
        .patch(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(error = %e, "publish node network annotations");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(mac: Option<&str>) -> Peer {
        Peer {
            name: "b".into(),
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
            public_ip: "192.168.77.3".parse().unwrap(),
            vtep_mac: mac.map(str::to_string),
        }
    }

    #[test]
    fn host_gw_routes_via_the_peer() {
        let c = peer_commands(Backend::HostGw, &peer(None));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].1.join(" "),
            "route replace 10.42.1.0/24 via 192.168.77.3"
        );
    }

    #[test]
    fn vxlan_programs_neighbour_fdb_and_route() {
        assert!(peer_commands(Backend::Vxlan, &peer(None)).is_empty());
        let c = peer_commands(Backend::Vxlan, &peer(Some("aa:bb:cc:dd:ee:ff")));
        let joined: Vec<String> = c
            .iter()
            .map(|(p, a)| format!("{p} {}", a.join(" ")))
            .collect();
        assert_eq!(
            joined,
            vec![
                "ip neigh replace 10.42.1.0 lladdr aa:bb:cc:dd:ee:ff dev rkube.1 nud permanent",
                "bridge fdb replace aa:bb:cc:dd:ee:ff dev rkube.1 dst 192.168.77.3 self permanent",
                "ip route replace 10.42.1.0/24 via 10.42.1.0 dev rkube.1 onlink",
            ]
        );
    }

    #[test]
    fn backend_flag_values() {
        assert_eq!("host-gw".parse::<Backend>().unwrap(), Backend::HostGw);
        assert_eq!("cni".parse::<Backend>().unwrap(), Backend::Cni);
        assert!("flannel".parse::<Backend>().is_err());
    }
}
