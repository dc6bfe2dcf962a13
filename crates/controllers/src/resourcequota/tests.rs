use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use serde_json::json;

use super::usage::{used, Namespace};

fn pod(name: &str, phase: &str, cpu: &str, mem: &str) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"containers": [
                {"name": "a", "image": "i", "resources": {
                    "requests": {"cpu": cpu, "memory": mem},
                    "limits": {"cpu": "1", "memory": mem}}},
                {"name": "b", "image": "i"}]},
            "status": {"phase": phase}
        }))
        .unwrap(),
    )
}

fn quota(hard: serde_json::Value, scopes: Option<&[&str]>) -> ResourceQuota {
    serde_json::from_value(json!({
        "metadata": {"name": "q", "namespace": "team"},
        "spec": {"hard": hard, "scopes": scopes}
    }))
    .unwrap()
}

fn strings(
    m: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> BTreeMap<String, String> {
    m.into_iter().map(|(k, v)| (k, v.0)).collect()
}

#[test]
fn pods_and_their_requests_and_limits_add_up() {
    let pods = vec![
        pod("a", "Running", "100m", "128Mi"),
        pod("b", "Pending", "250m", "128Mi"),
        pod("done", "Succeeded", "4", "1Gi"),
    ];
    let q = quota(
        json!({"pods": "10", "requests.cpu": "1", "requests.memory": "1Gi",
               "limits.cpu": "4", "limits.memory": "2Gi", "count/pods": "10"}),
        None,
    );
    let ns = Namespace {
        pods: &pods,
        ..Namespace::default()
    };
    let used = strings(used(&q, &ns));
    let want: BTreeMap<String, String> = [
        ("count/pods", "2"),
        ("limits.cpu", "2"),
        ("limits.memory", "256Mi"),
        ("pods", "2"),
        ("requests.cpu", "350m"),
        ("requests.memory", "256Mi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(used, want);
}

#[test]
fn services_node_ports_load_balancers_and_counts() {
    let svc = |type_: &str, node_ports: bool| -> Arc<Service> {
        let port = if node_ports {
            json!({"port": 80, "nodePort": 30080})
        } else {
            json!({"port": 80})
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "s", "namespace": "team"},
                "spec": {"type": type_, "ports": [port, port]}
            }))
            .unwrap(),
        )
    };
    let services = vec![
        svc("ClusterIP", false),
        svc("NodePort", true),
        svc("LoadBalancer", true),
    ];
    let q = quota(
        json!({"services": "5", "services.nodeports": "5", "services.loadbalancers": "1",
               "configmaps": "3", "count/deployments.apps": "2", "unknown.thing": "1"}),
        None,
    );
    let ns = Namespace {
        services: &services,
        counts: [
            ("count/configmaps".to_string(), 2),
            ("count/deployments.apps".to_string(), 1),
        ]
        .into_iter()
        .collect(),
        ..Namespace::default()
    };
    let used = strings(used(&q, &ns));
    assert_eq!(used["services"], "3");
    assert_eq!(used["services.nodeports"], "4");
    assert_eq!(used["services.loadbalancers"], "1");
    assert_eq!(used["configmaps"], "2");
    assert_eq!(used["count/deployments.apps"], "1");
    assert!(!used.contains_key("unknown.thing"));
}

#[test]
fn scopes_select_pods() {
    let best_effort: Arc<Pod> = Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "be", "namespace": "team"},
            "spec": {"containers": [{"name": "a", "image": "i"}]},
            "status": {"phase": "Running"}
        }))
        .unwrap(),
    );
    let pods = vec![best_effort, pod("a", "Running", "100m", "1Mi")];
    let ns = Namespace {
        pods: &pods,
        ..Namespace::default()
    };
    let q = quota(json!({"pods": "5", "services": "1"}), Some(&["BestEffort"]));
    let used = strings(used(&q, &ns));
    assert_eq!(used.get("pods").map(String::as_str), Some("1"));
    assert!(
        !used.contains_key("services"),
        "scoped quotas track pods only"
    );
    let q = quota(json!({"pods": "5"}), Some(&["NotBestEffort"]));
    assert_eq!(strings(super::usage::used(&q, &ns))["pods"], "1");
}

#[test]
fn a_service_type_change_is_seen_once_and_deletion_forgets_it() {
    use k8s_openapi::api::core::v1::ServiceSpec;
    let svc = |ty: &str| Service {
        metadata: kube::api::ObjectMeta {
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(ty.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let types = super::ServiceTypes::default();
    assert!(!types.changed(&svc("NodePort"), false), "first sight");
    assert!(!types.changed(&svc("NodePort"), false), "same type");
    assert!(
        types.changed(&svc("ClusterIP"), false),
        "NodePort -> ClusterIP"
    );
    assert!(!types.changed(&svc("ClusterIP"), true));
    assert!(
        types.0.lock().unwrap().is_empty(),
        "a deleted Service is forgotten"
    );
}
