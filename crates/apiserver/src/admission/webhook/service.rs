//! `clientConfig.service`: a ready endpoint of the Service, found through
//! its EndpointSlices, so the API server reaches the webhook pod directly
//! (no dependence on the service proxy running where the server runs).
//!
//! Upstream counterpart: kube-apiserver's endpoint service resolver
//! (`--enable-aggregator-routing`'s `NewEndpointServiceResolver`,
//! `ResolveEndpoint` in `k8s.io/apiserver/pkg/util/proxy`): the service
//! port picks the slice port by name, the first ready address is used.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use super::{call, Webhooks};

/// The address for the Service port `port`, from the Service and its
/// EndpointSlices.
pub fn resolve(service: &Value, slices: &[Value], port: u16) -> Result<SocketAddr, String> {
    let name = service
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = service
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let svc_port = ports
        .iter()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
        .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
    let port_name = svc_port.get("name").and_then(Value::as_str).unwrap_or("");
    for slice in slices {
        let Some(slice_port) = slice
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let endpoints = slice.get("endpoints").and_then(Value::as_array);
        for ep in endpoints.into_iter().flatten() {
            // A missing `ready` counts as ready (the API's rule).
            let ready = ep
                .pointer("/conditions/ready")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            let address = ep
                .get("addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<IpAddr>().ok());
            if let Some(ip) = address {
                return Ok(SocketAddr::new(ip, slice_port));
            }
        }
    }
    Err(format!(
        "service \"{name}\" in namespace \"{namespace}\" has no ready endpoints"
    ))
}

impl Webhooks {
    /// Where the webhook is: its URL, or a ready endpoint of its Service.
    pub(super) async fn target(
        &self,
        spec: &Value,
        limit: std::time::Duration,
    ) -> Result<call::Target, call::Error> {
        let config = spec.get("clientConfig").cloned().unwrap_or(Value::Null);
        if let Some(url) = config.get("url").and_then(Value::as_str) {
            return call::url_target(url, limit).await;
        }
        let Some(svc) = config.get("service") else {
            return Err(call::Error::Config(
                "clientConfig has neither url nor service".into(),
            ));
        };
        let field = |f: &str| svc.get(f).and_then(Value::as_str).unwrap_or("");
        let (ns, name) = (field("namespace"), field("name"));
        let port = svc
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(443);
        // Resolution errors read as the POST that could not be made, as
        // upstream's (`Post "https://<svc>.<ns>.svc:443/...": service
        // "<svc>" not found`).
        let unresolved_addr = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let url = call::service_target(svc, unresolved_addr, limit)?.url;
        let unresolved = |reason: String| call::Error::Post {
            url: url.clone(),
            reason,
        };
        let service = self
            .services
            .get(Some(ns), name, None)
            .await
            .map_err(|e| unresolved(e.status().message.clone()))?;
        let slices = self
            .slices
            .list(Some(ns), &Default::default())
            .await
            .map_err(|e| unresolved(e.status().message.clone()))?
            .items
            .into_iter()
            .filter(|s| {
                s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    == Some(name)
            })
            .collect::<Vec<_>>();
        let addr = resolve(&service, &slices, port).map_err(unresolved)?;
        call::service_target(svc, addr, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Value {
        json!({"metadata": {"name": "hook", "namespace": "sys"},
               "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443},
                                  {"name": "metrics", "port": 9090}]}})
    }

    #[test]
    fn picks_the_first_ready_address_of_the_named_port() {
        let slices = vec![json!({
            "ports": [{"name": "metrics", "port": 9090}, {"name": "https", "port": 8443}],
            "endpoints": [
                {"addresses": ["10.42.0.5"], "conditions": {"ready": false}},
                {"addresses": ["10.42.0.6"], "conditions": {"ready": true}},
            ],
        })];
        let addr = resolve(&service(), &slices, 443).unwrap();
        assert_eq!(addr, "10.42.0.6:8443".parse().unwrap());
    }

    #[test]
    fn no_ready_endpoint_or_unknown_port_is_an_error() {
        let slices = vec![json!({
            "ports": [{"name": "https", "port": 8443}],
            "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": false}}],
        })];
        let err = resolve(&service(), &slices, 443).unwrap_err();
        assert!(err.contains("no ready endpoints"), "{err}");
        let err = resolve(&service(), &slices, 444).unwrap_err();
        assert!(err.contains("no service port 444"), "{err}");
    }
}
