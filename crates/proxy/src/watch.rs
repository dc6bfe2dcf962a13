//! Keeping the rules current on a node: watches on Services and
//! EndpointSlices feed reflector stores; changes (coalesced over a short
//! window) recompute the Service ports and sync the proxier, which sends
//! only the fragments that changed. A failed sync is retried.
//!
//! Upstream counterpart: kube-proxy's config package (ServiceConfig,
//! EndpointSliceConfig informers) and its BoundedFrequencyRunner.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::model::{service_ports, Endpoint, ServicePort};
use crate::nft::Nft;
use crate::proxier::Proxier;
use crate::rules::Config;

/// How long changes are gathered before one sync.
const COALESCE: Duration = Duration::from_millis(10);
/// Wait before retrying a failed sync.
const RETRY: Duration = Duration::from_secs(5);

/// What the node's proxy is told at start.
#[derive(Debug, Clone)]
pub struct NodeProxy {
    pub node_name: String,
    pub rules: Config,
    /// The cluster DNS address and where this node's DNS server listens:
    /// port 53 of that Service goes to the local server, which has no pod
    /// behind it.
    pub local_dns: Option<(Ipv4Addr, Ipv4Addr)>,
}

/// Points the cluster DNS Service's port 53 at the node's own server.
pub fn with_local_dns(
    mut ports: Vec<ServicePort>,
    dns: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<ServicePort> {
    if let Some((cluster_ip, local)) = dns {
        for p in ports
            .iter_mut()
            .filter(|p| p.port == 53 && p.cluster_ips.contains(&cluster_ip))
        {
            p.endpoints = vec![Endpoint {
                ip: local,
                port: 53,
                ready: true,
                local: true,
            }];
        }
    }
    ports
}

/// Runs the watches and syncs forever.
pub async fn run(client: Client, node: NodeProxy, nft: Arc<dyn Nft>) {
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    let svc = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .map(|r| r.map(|_| ()));
    let eps = reflector::reflector(
        eps_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .map(|r| r.map(|_| ()));
    let n = changed.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(futures::stream::select(svc, eps));
        while let Some(ev) = events.next().await {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "proxy: watch");
            }
            n.notify_one();
        }
    });
    let mut proxier = Proxier::new(node.rules.clone(), nft);
    loop {
        changed.notified().await;
        tokio::time::sleep(COALESCE).await;
        let services: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
        let slices: Vec<EndpointSlice> = eps_store.state().iter().map(|s| (**s).clone()).collect();
        let ports = with_local_dns(
            service_ports(&services, &slices, &node.node_name),
            node.local_dns,
        );
        if let Err(e) = proxier.sync(&ports) {
            tracing::warn!(error = %e, "proxy: sync failed, retrying with a full resync");
            let n = changed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY).await;
                n.notify_one();
            });
        }
    }
}
