//! Root-namespace rules of the pod network: unreachable routes for the
//! cluster and service CIDRs (so nothing addressed to them that no more
//! specific route claims leaves the machine by the default route) and
//! masquerading of pod traffic that leaves the cluster network.
//!
//! Upstream counterpart: flannel's `--ip-masq` rules
//! (`pkg/trafficmngr`), k3s' blackhole routes for the cluster CIDRs.

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
}
