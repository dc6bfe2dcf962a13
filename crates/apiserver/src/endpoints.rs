//! The `default/kubernetes` Endpoints and EndpointSlice: where the API
//! server itself is reached, kept by the API server as upstream keeps
//! them (nothing else writes them: the Service has no selector, and the
//! Endpoints carry the skip-mirror label).
//!
//! Upstream counterpart: `pkg/controlplane/reconcilers` (the endpoint
//! reconciler and `endpointsadapter.go`'s slice built from the Endpoints).

use rkube_machinery::StatusError;
use rkube_registry::{ResourceStore, Target};
use serde_json::{json, Value};

use crate::ApiServer;

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";

/// The Endpoints of the API server at `ip:port`.
fn endpoints(ip: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    })
}

/// The EndpointSlice upstream derives from those Endpoints.
fn slice(ip: &str, port: u16) -> Value {
    let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": family,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    })
}

/// Create `want`, or bring the stored object's content to it.
async fn ensure(rs: &ResourceStore, want: Value) -> Result<(), StatusError> {
    match rs.get(Some(NAMESPACE), NAME, None).await {
        Ok(current) => {
            let mut next = current.clone();
            for (k, v) in want.as_object().into_iter().flatten() {
                if k == "metadata" {
                    continue;
                }
                next[k] = v.clone();
            }
            next["metadata"]["labels"] = want["metadata"]["labels"].clone();
            if next != current {
                rs.update(Some(NAMESPACE), NAME, next, Target::Main, false)
                    .await?;
            }
            Ok(())
        }
        Err(e) if e.reason() == "NotFound" => match rs.create(Some(NAMESPACE), want, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason() == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

impl ApiServer {
    /// Publish this API server's address (`ip`, and the port it serves
    /// on) behind the `default/kubernetes` Service.
    pub async fn publish_endpoints(&self, ip: &str, port: u16) -> Result<(), StatusError> {
        let eps = self
            .resource("", "v1", "endpoints")
            .expect("the catalog serves endpoints");
        ensure(eps, endpoints(ip, port)).await?;
        let slices = self
            .resource("discovery.k8s.io", "v1", "endpointslices")
            .expect("the catalog serves endpointslices");
        ensure(slices, slice(ip, port)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_follows_the_endpoints() {
        let s = slice("10.0.0.5", 6443);
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(s["endpoints"][0]["addresses"][0], "10.0.0.5");
        assert_eq!(s["ports"][0]["name"], "https");
        assert_eq!(slice("fd00::1", 6443)["addressType"], "IPv6");
        let e = endpoints("10.0.0.5", 6443);
        assert_eq!(e["subsets"][0]["ports"][0]["port"], 6443);
    }
}
