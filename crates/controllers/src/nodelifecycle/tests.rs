use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::health::*;
use super::{parse_duration, Settings};

fn node(ready: &str, extra: serde_json::Value) -> Node {
    let mut v = json!({
        "metadata": {"name": "n1", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                   "lastHeartbeatTime": "2024-01-01T00:00:10Z"}]}
    });
    crate::endpoints::tests::merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn taint_keys(taints: &[k8s_openapi::api::core::v1::Taint]) -> Vec<String> {
    let mut v: Vec<String> = taints
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    v.sort();
    v
}

#[test]
fn durations_parse_like_flags() {
    assert_eq!(parse_duration("40s"), Some(Duration::from_secs(40)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
    assert_eq!(parse_duration("soon"), None);
    let s = Settings::with(None, None);
    assert_eq!(
        (s.grace, s.period),
        (Duration::from_secs(40), Duration::from_secs(5))
    );
    let quick = Settings::with(Some(Duration::from_secs(4)), None);
    assert_eq!(quick.period, Duration::from_secs(1));
}

#[test]
fn the_grace_period_runs_from_the_last_heartbeat_seen_to_move() {
    let t0 = Instant::now();
    let grace = Duration::from_secs(40);
    let n = node("True", json!({}));
    let mut h = Health::new(&n, None, t0);
    h.observe(&n, None, t0 + Duration::from_secs(30));
    assert!(!h.expired(t0 + Duration::from_secs(39), grace));
    assert!(h.expired(t0 + Duration::from_secs(41), grace));
    // A new heartbeat at 35 s restarts the clock.
    let beat = node(
        "True",
        json!({"status": {"conditions": [{"type": "Ready", "status": "True",
               "lastHeartbeatTime": "2024-01-01T00:00:50Z"}]}}),
    );
    h.observe(&beat, None, t0 + Duration::from_secs(35));
    assert!(!h.expired(t0 + Duration::from_secs(70), grace));
    // So does a Lease renewal.
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(json!({
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"renewTime": "2024-01-01T00:01:00.000000Z"}}))
    .unwrap();
    h.observe(&beat, Some(&lease), t0 + Duration::from_secs(70));
    assert!(!h.expired(t0 + Duration::from_secs(100), grace));
    assert!(h.expired(t0 + Duration::from_secs(111), grace));
}

#[test]
fn a_silent_node_goes_unknown_once() {
    let now = Time(Timestamp::now());
    let n = node("True", json!({}));
    let conditions = unknown_conditions(&n, &now).unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let mem = conditions
        .iter()
        .find(|c| c.type_ == "MemoryPressure")
        .unwrap();
    assert_eq!(mem.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    let mut again = n.clone();
    again.status.as_mut().unwrap().conditions = Some(conditions);
    assert!(unknown_conditions(&again, &now).is_none());
}

#[test]
fn taints_follow_conditions_and_cordoning() {
    let now = Time(Timestamp::now());
    let unknown = node("Unknown", json!({}));
    let t = desired_taints(&unknown, &now, true).unwrap();
    assert_eq!(
        taint_keys(&t),
        [
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/unreachable:NoSchedule"
        ]
    );
    assert!(t
        .iter()
        .any(|t| t.effect == "NoExecute" && t.time_added.is_some()));
    // Going from Unknown to False swaps the taints; other taints stay.
    let not_ready = node(
        "False",
        json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    );
    let t = desired_taints(&not_ready, &now, true).unwrap();
    assert_eq!(
        taint_keys(&t),
        [
            "dedicated:NoSchedule",
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/not-ready:NoSchedule"
        ]
    );
    // A ready, cordoned node: only unschedulable.
    let cordoned = node("True", json!({"spec": {"unschedulable": true}}));
    let t = desired_taints(&cordoned, &now, true).unwrap();
    assert_eq!(
        taint_keys(&t),
        ["node.kubernetes.io/unschedulable:NoSchedule"]
    );
    // Already right: nothing to write.
    let mut done = cordoned.clone();
    done.spec.as_mut().unwrap().taints = Some(t);
    assert!(desired_taints(&done, &now, true).is_none());
    // Uncordoned and ready again: the taint goes.
    let mut back = done.clone();
    back.spec.as_mut().unwrap().unschedulable = None;
    assert_eq!(desired_taints(&back, &now, true).unwrap(), vec![]);
}

#[test]
fn held_back_no_execute_taints_are_not_added_and_lifted_ones_go() {
    let now = Time(Timestamp::now());
    let unknown = node("Unknown", json!({}));
    assert!(needs_new_no_execute(&unknown));
    let t = desired_taints(&unknown, &now, false).unwrap();
    assert_eq!(
        taint_keys(&t),
        ["node.kubernetes.io/unreachable:NoSchedule"]
    );
    // A swap from unreachable to not-ready is not a new taint.
    let swapping = node(
        "False",
        json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
    );
    assert!(!needs_new_no_execute(&swapping));
    // Every zone down: the NoExecute taint is lifted.
    let tainted = node(
        "Unknown",
        json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]}}),
    );
    let t = desired_taints(&tainted, &now, false).unwrap();
    assert_eq!(
        taint_keys(&t),
        ["node.kubernetes.io/unreachable:NoSchedule"]
    );
}
