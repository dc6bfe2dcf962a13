//! NodeName: a pod that names its node fits only there.
//!
//! Upstream counterpart: `plugins/nodename`. The scheduler only picks up
//! pods without spec.nodeName, so this matters for preemption dry runs and
//! for completeness of the profile.

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub const NAME: &str = "NodeName";
pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod.node_name.is_empty() || pod.node_name == node.name {
            Status::success()
        } else {
            Status::unresolvable(NAME, REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};

    #[test]
    fn requested_name() {
        let st = CycleState::default();
        let mut p = pod("p", &[]);
        assert!(NodeName.filter(&st, &p, &node("a", &[])).is_success());
        p.node_name = "a".into();
        assert!(NodeName.filter(&st, &p, &node("a", &[])).is_success());
        assert_eq!(
            NodeName.filter(&st, &p, &node("b", &[])).reasons,
            vec![REASON]
        );
    }
}
