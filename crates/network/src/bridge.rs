//! The node bridge and a veth pair per pod: the bridge (`rkube0`) holds
//! the podCIDR's first address and is every pod's gateway; each pod's
//! `eth0` gets an address of the podCIDR with its mask and a default
//! route via the bridge.
//!
//! Upstream counterpart: the CNI `bridge` plugin (with `isGateway`) as
//! flannel's generated config runs it, and `host-local` for addresses.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;

use crate::cmd::{ensure, Ip};
use crate::ipam::HostLocal;
use crate::{Error, PodIps, PodNetwork, PodRef};

/// The node bridge's name.
pub const BRIDGE: &str = "rkube0";

/// The pod network of one node over a Linux bridge.
#[derive(Debug)]
pub struct BridgeNetwork {
    ip: Arc<dyn Ip>,
    ipam_dir: PathBuf,
    mtu: u32,
    ipam: RwLock<Option<Arc<HostLocal>>>,
}

impl BridgeNetwork {
    /// `ipam_dir` is `<data-dir>/agent/ipam`; `mtu` the pods' (1450 under
    /// VXLAN, as flannel leaves room for its 50 byte header).
    pub fn new(ip: Arc<dyn Ip>, ipam_dir: &Path, mtu: u32) -> BridgeNetwork {
        BridgeNetwork {
            ip,
            ipam_dir: ipam_dir.to_path_buf(),
            mtu,
            ipam: RwLock::new(None),
        }
    }

    /// The node's podCIDR, once known.
    pub fn pod_cidr(&self) -> Option<Ipv4Net> {
        self.ipam.read().unwrap().as_ref().map(|h| h.net())
    }

    /// Takes the node's podCIDR: opens its address store and brings the
    /// bridge up with the gateway address. Idempotent.
    pub fn set_pod_cidr(&self, net: Ipv4Net) -> Result<(), Error> {
        if self.pod_cidr() == Some(net.trunc()) {
            return Ok(());
        }
        let hl = HostLocal::open(&self.ipam_dir, net)?;
        let gw = format!("{}/{}", hl.gateway(), net.prefix_len());
        let ip = self.ip.as_ref();
        ensure(ip, None, "ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        ip.run(None, "ip", &["addr", "replace", &gw, "dev", BRIDGE])?;
        ip.run(None, "ip", &["link", "set", BRIDGE, "up"])?;
        // Routing between the bridge and the other nodes.
        ip.sysctl("net/ipv4/ip_forward", "1")?;
        tracing::info!(pod_cidr = %net, bridge = BRIDGE, "pod network bridge ready");
        *self.ipam.write().unwrap() = Some(Arc::new(hl));
        Ok(())
    }

    fn store(&self) -> Result<Arc<HostLocal>, Error> {
        self.ipam.read().unwrap().clone().ok_or(Error::NoPodCidr)
    }
}

/// The host end's name: `veth` and a hash of the pod uid (interface
/// names stop at 15 bytes).
pub fn host_veth(uid: &str) -> String {
    // FNV-1a: stable across releases, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in uid.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("veth{h:08x}")
}

impl PodNetwork for BridgeNetwork {
    fn attach(&self, pod: &PodRef<'_>, netns: &Path) -> Result<PodIps, Error> {
        let store = self.store()?;
        let held = store.lookup(pod.uid)?;
        let host = host_veth(pod.uid);
        let ip = self.ip.as_ref();
        let exists = ip.run(None, "ip", &["link", "show", &host]).is_ok();
        if let (Some(addr), true) = (held, exists) {
            // Already attached (a retry, or the agent restarted).
            return Ok(PodIps {
                ips: vec![addr.into()],
            });
        }
        let addr = store.allocate(pod.uid)?;
        if exists {
            ensure(ip, None, "ip", &["link", "del", &host])?;
        }
        let mtu = self.mtu.to_string();
        let ns = netns.to_string_lossy();
        ip.run(
            None,
            "ip",
            &[
                "link", "add", &host, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu",
                &mtu, "netns", &ns,
            ],
        )?;
        ip.run(None, "ip", &["link", "set", &host, "master", BRIDGE, "up"])?;
        // Hairpin: a pod reaching itself through its Service is DNATed
        // back to the port it came in on, which a bridge refuses otherwise.
        ip.run(
            None,
            "ip",
            &[
                "link",
                "set",
                &host,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ],
        )?;
        let cidr = format!("{addr}/{}", store.net().prefix_len());
        let gw = store.gateway().to_string();
        let inside = Some(netns);
        ip.run(inside, "ip", &["link", "set", "lo", "up"])?;
        ip.run(inside, "ip", &["addr", "replace", &cidr, "dev", "eth0"])?;
        ip.run(inside, "ip", &["link", "set", "eth0", "up"])?;
        ip.run(
            inside,
            "ip",
            &["route", "replace", "default", "via", &gw, "dev", "eth0"],
        )?;
        tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), ip = %addr, "pod attached");
        Ok(PodIps {
            ips: vec![addr.into()],
        })
    }

    fn detach(&self, pod: &PodRef<'_>) -> Result<(), Error> {
        // Deleting the host end takes the pod's end with it.
        ensure(
            self.ip.as_ref(),
            None,
            "ip",
            &["link", "del", &host_veth(pod.uid)],
        )?;
        if let Ok(store) = self.store() {
            store.release(pod.uid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Recorder;

    #[test]
    fn attach_needs_a_pod_cidr_then_wires_a_veth() {
        let d = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder::default());
        let net = BridgeNetwork::new(rec.clone(), d.path(), 1450);
        let pod = PodRef {
            namespace: "default",
            name: "p",
            uid: "u1",
        };
        assert!(matches!(
            net.attach(&pod, Path::new("/ns")),
            Err(Error::NoPodCidr)
        ));
        net.set_pod_cidr("10.42.3.0/24".parse().unwrap()).unwrap();
        let ips = net.attach(&pod, Path::new("/ns")).unwrap();
        assert_eq!(
            ips.ips,
            vec!["10.42.3.2".parse::<std::net::IpAddr>().unwrap()]
        );
        let calls = rec.calls.lock().unwrap().join("\n");
        assert!(
            calls.contains("ip addr replace 10.42.3.1/24 dev rkube0"),
            "{calls}"
        );
        assert!(
            calls.contains("[/ns] ip addr replace 10.42.3.2/24 dev eth0"),
            "{calls}"
        );
        assert!(
            calls.contains("[/ns] ip route replace default via 10.42.3.1 dev eth0"),
            "{calls}"
        );
        net.detach(&pod).unwrap();
        let again = net
            .attach(
                &PodRef {
                    uid: "u2",
                    ..pod.clone()
                },
                Path::new("/ns2"),
            )
            .unwrap();
        assert_eq!(
            again.ips,
            vec!["10.42.3.3".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn veth_names_fit_and_differ() {
        let a = host_veth("6f1c2f3e-aaaa-bbbb-cccc-000000000001");
        let b = host_veth("6f1c2f3e-aaaa-bbbb-cccc-000000000002");
        assert!(a.len() <= 15);
        assert_ne!(a, b);
    }
}
