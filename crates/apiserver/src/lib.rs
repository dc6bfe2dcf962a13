//! The Kubernetes API over HTTPS.
//!
//! Upstream counterpart: kube-apiserver (`k8s.io/apiserver/pkg/endpoints`,
//! `pkg/controlplane`). A request goes: TLS and authentication
//! ([`serve`]) → path parsing ([`request`]) → the generic REST handlers
//! ([`rest`]) → the resource's [`rkube_registry::ResourceStore`] → the
//! store. Every built-in resource is served by the same handlers; what
//! differs per resource lives in its strategy.

mod admission;
mod apply;
mod authn;
mod binding;
mod decode;
mod discovery;
mod endpoints;
mod eviction;
mod handler;
mod metrics;
mod openapi;
mod patch_schema;
pub mod proxy;
pub mod request;
mod response;
mod rest;
mod review;
mod scale;
pub mod serve;
mod table;
#[cfg(test)]
mod test_fixture;
mod token;
mod watch;
#[cfg(test)]
mod watch_tests;
mod websocket;
mod write;
mod yaml;

use std::collections::HashMap;
use std::sync::Arc;

use rkube_api::catalog;
use rkube_registry::resources::service::ServiceStrategy;
use rkube_registry::resources::strategy_for;
use rkube_registry::{Clock, ResourceStore, Strategy, SystemClock};
use rkube_storage::Store;
use serde_json::json;

pub use handler::router;
pub use serve::{serve, User};

/// Build the large generated documents (OpenAPI, protobuf schema tables)
/// now rather than on the first request; blocking, so run it off the
/// async workers.
pub fn warm_up() {
    rkube_openapi::prepare();
    rkube_protobuf::warm_up();
}

/// The namespaces every cluster has from the start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The API server's state: a store per served resource.
pub struct ApiServer {
    resources: HashMap<(&'static str, &'static str, &'static str), Arc<ResourceStore>>,
    /// Signs and verifies service account tokens; without it TokenRequest
    /// is unavailable and bearer tokens are not accepted.
    sa_key: Option<Arc<rkube_pki::SaKey>>,
    /// The `default/kubernetes` Service's cluster IP: the range's first.
    kubernetes_service_ip: Option<String>,
    /// Reaches kubelets for logs, exec, attach, port-forward and metrics.
    kubelet: Option<Arc<proxy::KubeletClient>>,
    summaries: metrics::SummaryCache,
    /// The admission plugins' state (priority classes, limit ranges and
    /// quotas they read).
    admission: Arc<admission::Admission>,
}

/// The first usable address of an IPv4 CIDR (`10.43.0.0/16` → 10.43.0.1).
fn first_ip(cidr: &str) -> Option<String> {
    let (addr, _) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = addr.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string())
}

/// What an API server is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--service-cluster-ip-range`: where Service cluster IPs come from.
    pub service_cidr: String,
    /// `--service-node-port-range`.
    pub node_ports: std::ops::RangeInclusive<u16>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            service_cidr: "10.43.0.0/16".into(),
            node_ports: 30000..=32767,
        }
    }
}

impl ApiServer {
    /// Serve every resource of the catalog from `store`.
    pub fn new(store: Arc<dyn Store>, config: &Config) -> Result<ApiServer, String> {
        Self::with_clock(store, config, Arc::new(SystemClock))
    }

    pub fn with_clock(
        store: Arc<dyn Store>,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<ApiServer, String> {
        let services = ServiceStrategy::over_store(
            store.clone(),
            &config.service_cidr,
            config.node_ports.clone(),
        )
        .ok_or_else(|| format!("invalid service CIDR {:?}", config.service_cidr))?;
        let services: Arc<dyn Strategy> = Arc::new(services);
        let admission = Arc::new(admission::Admission::new(store.clone(), clock.clone()));
        let resources = catalog::all()
            .map(|info| {
                let strategy = match (info.group, info.plural) {
                    ("", "services") => services.clone(),
                    _ => strategy_for(info),
                };
                let strategy = admission::quota::wrap(info, strategy, &admission);
                let strategy =
                    admission::webhook::strategy::wrap(info, strategy, &admission.webhooks);
                let rs = ResourceStore::new(info, strategy, store.clone(), clock.clone());
                ((info.group, info.version, info.plural), Arc::new(rs))
            })
            .collect();
        Ok(ApiServer {
            resources,
            sa_key: None,
            kubernetes_service_ip: first_ip(&config.service_cidr),
            kubelet: None,
            summaries: Default::default(),
            admission,
        })
    }

    /// Issue and accept service account tokens signed with `key`.
    pub fn with_service_account_key(mut self, key: rkube_pki::SaKey) -> ApiServer {
        self.sa_key = Some(Arc::new(key));
        self
    }

    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&Arc<ResourceStore>> {
        let info = catalog::lookup(group, version, plural)?;
        self.resources.get(&(info.group, info.version, info.plural))
    }

    fn namespaces(&self) -> &Arc<ResourceStore> {
        self.resource("", "v1", "namespaces")
            .expect("the catalog serves namespaces")
    }

    /// Create the system namespaces that do not exist yet.
    pub async fn bootstrap(&self) -> Result<(), rkube_machinery::StatusError> {
        for ns in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.namespaces().create(None, obj, false).await {
                Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
                Err(e) if e.reason() == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        // The priority classes system pods name (upstream's scheduling
        // bootstrap controller makes the same two).
        let classes = self
            .resource("scheduling.k8s.io", "v1", "priorityclasses")
            .expect("the catalog serves priorityclasses");
        for pc in rkube_registry::resources::cluster::system_priority_classes() {
            match classes.create(None, pc, false).await {
                Ok(_) => {}
                Err(e) if e.reason() == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        // The Service in front of the API server, at the range's first IP.
        let services = self
            .resource("", "v1", "services")
            .expect("the catalog serves services");
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": self.kubernetes_service_ip,
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                     "sessionAffinity": "None"},
        });
        // Look first: a create would try to allocate its IP again.
        match services.get(Some("default"), "kubernetes", None).await {
            Ok(_) => {}
            Err(e) if e.reason() == "NotFound" => {
                services.create(Some("default"), svc, false).await?;
                tracing::info!("created the kubernetes service");
            }
            Err(e) => return Err(e),
        }
        // The cluster DNS Service tools look for (k3s's coredns manifest):
        // the range's tenth address, served by rkube-dns on every node.
        let dns_ip = self.kubernetes_service_ip.as_deref().and_then(|ip| {
            let ip: std::net::Ipv4Addr = ip.parse().ok()?;
            Some(std::net::Ipv4Addr::from(u32::from(ip) + 9).to_string())
        });
        let dns = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
                                    "kubernetes.io/cluster-service": "true"}},
            "spec": {"type": "ClusterIP", "clusterIP": dns_ip,
                     "selector": {"k8s-app": "kube-dns"},
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                               {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]},
        });
        match services.get(Some("kube-system"), "kube-dns", None).await {
            Ok(_) => {}
            Err(e) if e.reason() == "NotFound" => {
                match services.create(Some("kube-system"), dns, false).await {
                    Ok(_) => tracing::info!("created the kube-dns service"),
                    // The address may be taken by a user's Service: keep going.
                    Err(e) => {
                        tracing::warn!(error = %e.status().message, "cannot create the kube-dns service")
                    }
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}
