//! The service table: TYPE, CLUSTER-IP, EXTERNAL-IP and PORT(S).
//!
//! Upstream counterpart: printService, getServiceExternalIP, makePortString
//! and loadBalancerStatusStringer in pkg/printers/internalversion/printers.go.

use super::super::format;
use super::super::{age, age_column, column, decode, doc, name, name_column, wide, Printer};
use k8s_openapi::api::core::v1 as core;
use std::collections::BTreeSet;

const SPEC: &str = "io.k8s.api.core.v1.ServiceSpec";

pub(in crate::table) static SERVICE: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column("Type", "string", doc(SPEC, "type")),
            column("Cluster-IP", "string", doc(SPEC, "clusterIP")),
            column("External-IP", "string", doc(SPEC, "externalIPs")),
            column("Port(s)", "string", doc(SPEC, "ports")),
            age_column(),
            wide(column("Selector", "string", doc(SPEC, "selector"))),
        ]
    },
    row: |object, now| {
        let svc: core::Service = decode("Service", object)?;
        let spec = svc.spec.clone().unwrap_or_default();
        let cluster_ip = spec
            .cluster_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .cloned()
            .unwrap_or_else(|| "<none>".to_owned());
        let ports = port_string(spec.ports.as_deref().unwrap_or_default());
        Ok(vec![
            name(&svc.metadata),
            spec.type_.clone().unwrap_or_default().into(),
            cluster_ip.into(),
            external_ip(&svc).into(),
            if ports.is_empty() {
                "<none>".to_owned()
            } else {
                ports
            }
            .into(),
            age(&svc.metadata, now),
            format::labels(spec.selector.as_ref()).into(),
        ])
    },
};

/// `80/TCP,443:30443/TCP`: port, node port when allocated, protocol.
fn port_string(ports: &[core::ServicePort]) -> String {
    ports
        .iter()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(node_port) if node_port > 0 => format!("{}:{node_port}/{protocol}", p.port),
                _ => format!("{}/{protocol}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Load-balancer ingress points (IP, else hostname), deduplicated and sorted.
/// The server prints wide, so upstream's 16-character clipping never applies.
fn load_balancer_ips(svc: &core::Service) -> Vec<String> {
    let set: BTreeSet<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.ip.clone()
                .filter(|ip| !ip.is_empty())
                .or_else(|| i.hostname.clone().filter(|h| !h.is_empty()))
        })
        .collect();
    set.into_iter().collect()
}

fn external_ip(svc: &core::Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external = spec.external_ips.unwrap_or_default();
    match spec.type_.as_deref().unwrap_or_default() {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_owned()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all = load_balancer_ips(svc);
            all.extend(external);
            if all.is_empty() {
                "<pending>".to_owned()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => spec.external_name.unwrap_or_default(),
        _ => "<unknown>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn row(spec: Value, status: Value) -> Vec<Value> {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": spec, "status": status,
        });
        SERVICE
            .row(&svc, "2024-05-01T12:00:00Z".parse().unwrap())
            .unwrap()
    }

    #[test]
    fn cluster_ip_service() {
        let cells = row(
            json!({"type": "ClusterIP", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                   "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                   "selector": {"k8s-app": "kube-dns"}}),
            json!({}),
        );
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("ClusterIP"),
                json!("10.43.0.10"),
                json!("<none>"),
                json!("53/UDP,53/TCP"),
                json!("60m"),
                json!("k8s-app=kube-dns"),
            ]
        );
    }

    #[test]
    fn headless_service_without_ports() {
        let cells = row(
            json!({"type": "ClusterIP", "clusterIPs": ["None"]}),
            json!({}),
        );
        assert_eq!(cells[2], "None");
        assert_eq!(cells[4], "<none>");
        assert_eq!(cells[6], "<none>");
    }

    #[test]
    fn node_port_service_with_external_ips() {
        let cells = row(
            json!({"type": "NodePort", "clusterIPs": ["10.43.1.2"], "externalIPs": ["1.2.3.4", "5.6.7.8"],
                   "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
            json!({}),
        );
        assert_eq!(cells[3], "1.2.3.4,5.6.7.8");
        assert_eq!(cells[4], "80:30080/TCP");
    }

    #[test]
    fn load_balancer_pending_and_assigned() {
        let spec = json!({"type": "LoadBalancer", "clusterIPs": ["10.43.1.3"],
                          "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]});
        assert_eq!(row(spec.clone(), json!({}))[3], "<pending>");
        let status = json!({"loadBalancer": {"ingress": [
            {"ip": "192.0.2.9"}, {"hostname": "lb.example.com"}, {"ip": "192.0.2.1"}
        ]}});
        assert_eq!(
            row(spec.clone(), status.clone())[3],
            "192.0.2.1,192.0.2.9,lb.example.com"
        );
        let mut with_external = spec;
        with_external["externalIPs"] = json!(["203.0.113.7"]);
        assert_eq!(
            row(with_external, status)[3],
            "192.0.2.1,192.0.2.9,lb.example.com,203.0.113.7"
        );
    }

    #[test]
    fn external_name_service() {
        let cells = row(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        );
        assert_eq!(cells[1], "ExternalName");
        assert_eq!(cells[2], "<none>");
        assert_eq!(cells[3], "db.example.com");
    }
}
