//! Node health from heartbeats, and the taints that follow from a node's
//! conditions — pure, over a snapshot and an explicit clock.
//!
//! Upstream counterpart: `tryUpdateNodeHealth`, `doNoScheduleTaintingPass`
//! and `doNoExecuteTaintingPass` in `pkg/controller/nodelifecycle/
//! node_lifecycle_controller.go`. A node is healthy while either of its
//! heartbeats moves: the Ready condition's lastHeartbeatTime or its Lease
//! in kube-node-lease. Like upstream, the grace period runs from when
//! *this controller* last saw one move (its probe time), not from the
//! timestamps the kubelet wrote, so clock skew between machines does not
//! matter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The conditions the controller sets to Unknown when the kubelet goes
/// quiet.
const WATCHED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller remembers of one node between passes.
#[derive(Clone, Debug)]
pub struct Health {
    /// When a heartbeat was last seen to move.
    pub probe: Instant,
    heartbeat: Option<Time>,
    lease_renew: Option<String>,
    /// The Ready status seen on the last pass, to notice transitions.
    pub last_ready: Option<String>,
}

impl Health {
    /// A node seen for the first time: its grace period starts now.
    pub fn new(node: &Node, lease: Option<&Lease>, now: Instant) -> Health {
        Health {
            probe: now,
            heartbeat: ready_condition(node).and_then(|c| c.last_heartbeat_time.clone()),
            lease_renew: lease.and_then(renew_of),
            last_ready: ready_status(node).map(str::to_string),
        }
    }

    /// Note this pass's heartbeats; the probe time moves if either did.
    pub fn observe(&mut self, node: &Node, lease: Option<&Lease>, now: Instant) {
        let heartbeat = ready_condition(node).and_then(|c| c.last_heartbeat_time.clone());
        if heartbeat != self.heartbeat {
            self.heartbeat = heartbeat;
            self.probe = now;
        }
        let renew = lease.and_then(renew_of);
        if renew.is_some() && renew != self.lease_renew {
            self.lease_renew = renew;
            self.probe = now;
        }
    }

    pub fn expired(&self, now: Instant, grace: Duration) -> bool {
        now.saturating_duration_since(self.probe) > grace
    }
}

fn renew_of(lease: &Lease) -> Option<String> {
    let spec = lease.spec.as_ref()?;
    spec.renew_time
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| lease.metadata.resource_version.clone())
}

pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn ready_status(node: &Node) -> Option<&str> {
    ready_condition(node).map(|c| c.status.as_str())
}

/// The conditions of a node whose kubelet stopped posting: the watched
/// ones Unknown (added when missing). `None` when they already are.
pub fn unknown_conditions(node: &Node, now: &Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn condition(node: &Node, type_: &str) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// The taint keys the controller manages, with the effect each carries.
const MANAGED: [(&str, &str); 9] = [
    (TAINT_NOT_READY, "NoSchedule"),
    (TAINT_UNREACHABLE, "NoSchedule"),
    (TAINT_NOT_READY, "NoExecute"),
    (TAINT_UNREACHABLE, "NoExecute"),
    (TAINT_UNSCHEDULABLE, "NoSchedule"),
    (TAINT_MEMORY_PRESSURE, "NoSchedule"),
    (TAINT_DISK_PRESSURE, "NoSchedule"),
    (TAINT_PID_PRESSURE, "NoSchedule"),
    (TAINT_NETWORK_UNAVAILABLE, "NoSchedule"),
];

/// The (key, effect) pairs the node's state calls for.
fn wanted_taints(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let ready = condition(node, "Ready");
    match ready.as_deref() {
        Some("False") => {
            out.push((TAINT_NOT_READY, "NoSchedule"));
            out.push((TAINT_NOT_READY, "NoExecute"));
        }
        Some("Unknown") => {
            out.push((TAINT_UNREACHABLE, "NoSchedule"));
            out.push((TAINT_UNREACHABLE, "NoExecute"));
        }
        _ => {}
    }
    for (type_, key) in [
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
        ("NetworkUnavailable", TAINT_NETWORK_UNAVAILABLE),
    ] {
        if condition(node, type_).as_deref() == Some("True") {
            out.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

fn is_managed(t: &Taint) -> bool {
    MANAGED.iter().any(|(k, e)| t.key == *k && t.effect == *e)
}

fn current_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// Whether the node's conditions call for a NoExecute taint while it has
/// none of the managed ones yet: the step the zone limiter paces (a
/// swap between not-ready and unreachable is not paced, as upstream).
pub fn needs_new_no_execute(node: &Node) -> bool {
    let wanted = wanted_taints(node).iter().any(|(_, e)| *e == "NoExecute");
    let has = current_taints(node)
        .iter()
        .any(|t| t.effect == "NoExecute" && is_managed(t));
    wanted && !has
}

/// The node's taints as they should be: the managed ones its conditions
/// and `spec.unschedulable` call for (NoExecute ones stamped with
/// `now`, and only when `no_execute` allows them — else the managed
/// NoExecute taints go), every other taint kept. `None` when nothing
/// changes.
pub fn desired_taints(node: &Node, now: &Time, no_execute: bool) -> Option<Vec<Taint>> {
    let current = current_taints(node);
    let mut wanted = wanted_taints(node);
    if !no_execute {
        wanted.retain(|(_, e)| *e != "NoExecute");
    }
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed(t) || wanted.iter().any(|(k, e)| t.key == *k && t.effect == *e))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.into(),
                effect: effect.into(),
                time_added: (effect == "NoExecute").then(|| now.clone()),
                value: None,
            });
        }
    }
    let same = |a: &[Taint], b: &[Taint]| {
        let key = |t: &Taint| (t.key.clone(), t.effect.clone(), t.value.clone());
        let a: BTreeMap<_, _> = a.iter().map(|t| (key(t), ())).collect();
        let b: BTreeMap<_, _> = b.iter().map(|t| (key(t), ())).collect();
        a == b
    };
    (!same(&current, &out)).then_some(out)
}
