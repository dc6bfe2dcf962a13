use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointSubset, Pod, Service};
use serde_json::json;

use super::build::*;

pub(crate) fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "labels": {"app": "web"}, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "i",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                   "lastTransitionTime": "2024-01-01T00:00:05Z"}]}
    });
    merge(&mut v, extra);
    Arc::new(serde_json::from_value(v).unwrap())
}

pub(crate) fn service(extra: serde_json::Value) -> Service {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.5",
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

pub(crate) fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

fn ips(list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>) -> Vec<String> {
    list.iter().flatten().map(|a| a.ip.clone()).collect()
}

#[test]
fn ready_pods_are_addresses_and_unready_ones_not_ready_addresses() {
    let pods = vec![
        pod("a", "10.42.0.2", true, json!({})),
        pod("b", "10.42.0.3", false, json!({})),
    ];
    let (subsets, truncated) = desired_subsets(&service(json!({})), &pods);
    assert!(!truncated);
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.3"]);
    let port = &subsets[0].ports.as_ref().unwrap()[0];
    // The named target port resolved to the container's port.
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    let addr = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(addr.node_name.as_deref(), Some("node-a"));
    let target = addr.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("a"))
    );
}

#[test]
fn publish_not_ready_addresses_makes_every_pod_an_address() {
    let svc = service(json!({"spec": {"publishNotReadyAddresses": true}}));
    let pods = vec![pod("b", "10.42.0.3", false, json!({}))];
    let (subsets, _) = desired_subsets(&svc, &pods);
    assert_eq!(ips(&subsets[0].addresses), ["10.42.0.3"]);
    assert!(subsets[0].not_ready_addresses.is_none());
}

#[test]
fn pods_without_ip_finished_or_terminating_are_left_out() {
    let pods = vec![
        pod("noip", "", true, json!({"status": {"podIPs": []}})),
        pod(
            "done",
            "10.42.0.4",
            false,
            json!({"spec": {"restartPolicy": "Never"}, "status": {"phase": "Succeeded"}}),
        ),
        pod(
            "going",
            "10.42.0.5",
            true,
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:01:00Z"}}),
        ),
    ];
    let (subsets, _) = desired_subsets(&service(json!({})), &pods);
    assert!(subsets.is_empty(), "{subsets:?}");
}

#[test]
fn a_named_port_missing_on_a_pod_drops_only_that_pod_for_that_port() {
    let svc = service(json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}}));
    let other = pod(
        "b",
        "10.42.0.3",
        true,
        json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
    );
    let pods = vec![pod("a", "10.42.0.2", true, json!({})), other];
    let (subsets, _) = desired_subsets(&svc, &pods);
    // a has both ports, b only the numeric one: two subsets after repacking.
    assert_eq!(subsets.len(), 2, "{subsets:?}");
    let with = |ip: &str| -> Vec<&EndpointSubset> {
        subsets
            .iter()
            .filter(|s| ips(&s.addresses).contains(&ip.to_string()))
            .collect()
    };
    let a_ports: usize = with("10.42.0.2")
        .iter()
        .map(|s| s.ports.as_ref().unwrap().len())
        .sum();
    assert_eq!(a_ports, 2);
    let b = with("10.42.0.3");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].ports.as_ref().unwrap()[0].port, 9090);
}

#[test]
fn headless_service_without_ports_lists_addresses_with_hostnames() {
    let svc = service(json!({"spec": {"clusterIP": "None", "ports": null}}));
    let pods = vec![pod(
        "web-0",
        "10.42.0.2",
        true,
        json!({"spec": {"hostname": "web-0", "subdomain": "web"}}),
    )];
    let ep = desired_endpoints(&svc, &pods, None);
    let subsets = ep.subsets.unwrap();
    assert!(subsets[0].ports.is_none());
    let addr = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(addr.hostname.as_deref(), Some("web-0"));
    assert_eq!(
        ep.metadata
            .labels
            .unwrap()
            .get(HEADLESS)
            .map(String::as_str),
        Some("")
    );
    // A non-headless Service without ports has no endpoints at all.
    let plain = service(json!({"spec": {"ports": null}}));
    assert!(desired_subsets(&plain, &pods).0.is_empty());
}

#[test]
fn more_than_a_thousand_addresses_are_truncated_and_annotated() {
    let pods: Vec<_> = (0..1100)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.42.{}.{}", i / 250, i % 250 + 1),
                i % 2 == 0,
                json!({}),
            )
        })
        .collect();
    let ep = desired_endpoints(&service(json!({})), &pods, None);
    let s = &ep.subsets.as_ref().unwrap()[0];
    let ready = s.addresses.as_ref().map_or(0, Vec::len);
    let not_ready = s.not_ready_addresses.as_ref().map_or(0, Vec::len);
    assert_eq!(ready, 550, "ready addresses are kept first");
    assert_eq!(ready + not_ready, MAX_CAPACITY);
    assert_eq!(
        ep.metadata
            .annotations
            .unwrap()
            .get(OVER_CAPACITY)
            .map(String::as_str),
        Some("truncated")
    );
}

#[test]
fn trigger_time_alone_does_not_make_an_update() {
    let svc = service(json!({}));
    let pods = vec![pod("a", "10.42.0.2", true, json!({}))];
    let t1 = pod_change_time(&pods[0]);
    let current = desired_endpoints(&svc, &pods, t1);
    let want = desired_endpoints(&svc, &pods, None);
    assert!(up_to_date(&current, &want));
    assert_eq!(
        current
            .metadata
            .annotations
            .unwrap()
            .get(LAST_CHANGE_TRIGGER_TIME)
            .map(String::as_str),
        Some("2024-01-01T00:00:05Z")
    );
    let fewer = desired_endpoints(&svc, &[], None);
    assert!(!up_to_date(&fewer, &want));
}
