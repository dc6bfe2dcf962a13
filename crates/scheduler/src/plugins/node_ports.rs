//! NodePorts: a pod's host ports must be free on the node.
//!
//! Upstream counterpart: `plugins/nodeports`.

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub const NAME: &str = "NodePorts";
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let clash = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if clash {
            Status::unschedulable(NAME, REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::{node, place, pod};
    use crate::podinfo::HostPort;

    #[test]
    fn port_clash() {
        let st = CycleState::default();
        let hp = |port| HostPort {
            protocol: "TCP".into(),
            ip: "0.0.0.0".into(),
            port,
        };
        let mut n = node("n", &[]);
        let mut existing = pod("e", &[]);
        existing.host_ports = vec![hp(8080)];
        place(&mut n, existing);
        let mut p = pod("p", &[]);
        p.host_ports = vec![hp(8081)];
        assert!(NodePorts.filter(&st, &p, &n).is_success());
        p.host_ports.push(hp(8080));
        let s = NodePorts.filter(&st, &p, &n);
        assert_eq!(
            (s.code, s.reasons),
            (Code::Unschedulable, vec![REASON.to_string()])
        );
    }
}
