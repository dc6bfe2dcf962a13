//! Root-namespace rules of the pod network: unreachable routes for the
//! cluster and service CIDRs (so nothing addressed to them that no more
//! specific route claims leaves the machine by the default route) and
//! masquerading of pod traffic that leaves the cluster network.
//!
//! Upstream counterpart: flannel's `--ip-masq` rules
//! (`pkg/trafficmngr`), k3s' blackhole routes for the cluster CIDRs.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::cmd::{ensure, Ip};
use crate::Error;

/// The nftables table holding the masquerade rule.
pub const NFT_TABLE: &str = "rkube-network";

/// Adds (or keeps) an unreachable route for each CIDR.
pub fn unreachable(ip: &dyn Ip, cidrs: &[Ipv4Net]) -> Result<(), Error> {
    for c in cidrs {
        ip.run(
            None,
            "ip",
            &["route", "replace", "unreachable", &c.trunc().to_string()],
        )?;
    }
    Ok(())
}

/// The routing table, and the preference of the rule using it, through
/// which the node itself reaches Service IPs.
pub const HOST_SERVICES_TABLE: &str = "4242";

/// Lets processes on the node (and hostNetwork pods) connect to Service
/// IPs despite the service range's unreachable route: a socket's route is
/// chosen at connect(), before the proxy's output DNAT could act, so the
/// unreachable route failed every such connect. Locally made packets
/// (`iif lo`) to the range use a table that sends them into the pod
/// bridge, from the bridge's address: a DNAT'd packet is routed again to
/// its endpoint, and one to an address no Service holds goes nowhere but
/// the node's own bridge. Forwarded traffic still meets the unreachable
/// route.
pub fn host_service_access(
    ip: &dyn Ip,
    service: Ipv4Net,
    bridge: &str,
    source: Ipv4Addr,
) -> Result<(), Error> {
    let svc = service.trunc().to_string();
    let src = source.to_string();
    let table = HOST_SERVICES_TABLE;
    ip.run(
        None,
        "ip",
        &[
            "route", "replace", &svc, "dev", bridge, "src", &src, "table", table,
        ],
    )?;
    let rules = ip.run(None, "ip", &["rule", "list", "pref", table])?;
    if !rules.contains(&svc) {
        ip.run(
            None,
            "ip",
            &[
                "rule", "add", "pref", table, "iif", "lo", "to", &svc, "lookup", table,
            ],
        )?;
    }
    Ok(())
}

/// Masquerades traffic from pods (`cluster`) to anywhere outside the
/// cluster network; pod to pod keeps its source address. Rewritten whole
/// each time, so it is idempotent.
pub fn masquerade(ip: &dyn Ip, cluster: Ipv4Net) -> Result<(), Error> {
    let c = cluster.trunc().to_string();
    ensure(ip, None, "nft", &["add", "table", "ip", NFT_TABLE])?;
    ip.run(
        None,
        "nft",
        &[
            "add",
            "chain",
            "ip",
            NFT_TABLE,
            "postrouting",
            "{",
            "type",
            "nat",
            "hook",
            "postrouting",
            "priority",
            "srcnat",
            ";",
            "}",
        ],
    )?;
    ip.run(
        None,
        "nft",
        &["flush", "chain", "ip", NFT_TABLE, "postrouting"],
    )?;
    ip.run(
        None,
        "nft",
        &[
            "add",
            "rule",
            "ip",
            NFT_TABLE,
            "postrouting",
            "ip",
            "saddr",
            &c,
            "ip",
            "daddr",
            "!=",
            &c,
            "masquerade",
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Recorder;

    #[test]
    fn unreachable_routes_are_replaced_not_added() {
        let rec = Recorder::default();
        unreachable(
            &rec,
            &[
                "10.42.0.0/16".parse().unwrap(),
                "10.43.0.5/16".parse().unwrap(),
            ],
        )
        .unwrap();
        let calls = rec.calls.lock().unwrap();
        assert_eq!(
            *calls,
            vec![
                "ip route replace unreachable 10.42.0.0/16",
                "ip route replace unreachable 10.43.0.0/16"
            ]
        );
    }

    #[test]
    fn the_node_reaches_services_through_its_own_table() {
        let rec = Recorder::default();
        let svc = "10.43.0.0/16".parse().unwrap();
        host_service_access(&rec, svc, "rkube0", "10.42.3.1".parse().unwrap()).unwrap();
        let calls = rec.calls.lock().unwrap();
        assert_eq!(
            *calls,
            vec![
                "ip route replace 10.43.0.0/16 dev rkube0 src 10.42.3.1 table 4242",
                "ip rule list pref 4242",
                "ip rule add pref 4242 iif lo to 10.43.0.0/16 lookup 4242",
            ]
        );
    }
}
