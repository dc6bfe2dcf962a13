//! Services and EndpointSlices for the proxy's tests.

#![allow(dead_code)]

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub fn service(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": spec,
    }))
    .unwrap()
}

pub fn slice(
    svc: &str,
    endpoints: &[(&str, bool, &str)],
    port_name: &str,
    port: u16,
) -> EndpointSlice {
    let eps: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(ip, ready, node)| {
            serde_json::json!({
            "addresses": [ip], "conditions": {"ready": ready}, "nodeName": node})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": format!("{svc}-x"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    }))
    .unwrap()
}

pub fn cfg() -> rkube_proxy::Config {
    rkube_proxy::Config {
        cluster_cidr: "10.42.0.0/16".into(),
    }
}
