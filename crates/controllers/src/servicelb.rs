//! The service load balancer: LoadBalancer Services get the addresses of
//! the cluster's ready nodes as status.loadBalancer.ingress; every node's
//! proxy then accepts the Service's port on those addresses.
//!
//! Upstream counterpart: k3s's servicelb (pkg/cloudprovider/servicelb.go),
//! which publishes node addresses (ExternalIP before InternalIP) for
//! Services without a loadBalancerClass.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::informers::Informers;

/// The ingress IPs a Service should carry, or None when servicelb leaves
/// it alone (not LoadBalancer, or another class's).
pub fn ingress_for(svc: &Service, nodes: &[Arc<Node>]) -> Option<Vec<String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
        return None;
    }
    let mut ips: Vec<String> = nodes
        .iter()
        .filter(|n| ready(n))
        .filter_map(|n| {
            let addrs = n.status.as_ref()?.addresses.as_ref()?;
            let pick = |t: &str| {
                addrs
                    .iter()
                    .find(|a| a.type_ == t)
                    .map(|a| a.address.clone())
            };
            pick("ExternalIP").or_else(|| pick("InternalIP"))
        })
        .collect();
    ips.sort();
    ips.dedup();
    Some(ips)
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn current(svc: &Service) -> Vec<String> {
    let mut v: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect();
    v.sort();
    v
}

/// Runs over the shared Service and Node informers: a Service change
/// reconciles that Service, a Node change all LoadBalancer Services.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let services = informers.store::<Service>();
    let nodes = informers.store::<Node>();
    let svc_events = informers.shared_stream::<Service>().map(|s| Some(Some(s)));
    let node_events = informers.shared_stream::<Node>().map(|_| Some(None));
    let mut events = Box::pin(futures::stream::select(svc_events, node_events));
    let _ = services.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    while let Some(ev) = events.next().await {
        let Some(which) = ev else { continue };
        let targets: Vec<Arc<Service>> = match which {
            Some(svc) => services
                .get(&kube::runtime::reflector::ObjectRef::from_obj(&*svc))
                .into_iter()
                .collect(),
            None => services.state(),
        };
        let node_list = nodes.state();
        for svc in targets {
            let Some(want) = ingress_for(&svc, &node_list) else {
                continue;
            };
            if want == current(&svc) {
                continue;
            }
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let ingress: Vec<_> = want
                .iter()
                .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
                .collect();
            let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "servicelb: update ingress");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: bool, addrs: &[(&str, &str)]) -> Arc<Node> {
        let addresses: Vec<_> = addrs
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "n"},
                "status": {"addresses": addresses,
                           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
            }))
            .unwrap(),
        )
    }

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn ready_node_addresses_external_first() {
        let nodes = vec![
            node(true, &[("InternalIP", "10.0.0.2")]),
            node(
                true,
                &[("InternalIP", "10.0.0.1"), ("ExternalIP", "203.0.113.1")],
            ),
            node(false, &[("InternalIP", "10.0.0.3")]),
        ];
        let lb = svc(json!({"type": "LoadBalancer"}));
        assert_eq!(
            ingress_for(&lb, &nodes).unwrap(),
            ["10.0.0.2", "203.0.113.1"]
        );
        assert_eq!(
            ingress_for(&svc(json!({"type": "ClusterIP"})), &nodes),
            None
        );
        let other = svc(json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}));
        assert_eq!(ingress_for(&other, &nodes), None);
    }
}
