//! Keeping the zone current: watches on Services and EndpointSlices feed
//! reflector stores; every change (coalesced over a short window) rebuilds
//! the zone and swaps it into the resolver.
//!
//! Upstream counterpart: CoreDNS's kubernetes plugin controller
//! (plugin/kubernetes/controller.go), which keeps informers on the same
//! two resources.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::server::Resolver;
use crate::zone::Zone;

/// How long changes are gathered before one rebuild.
const COALESCE: Duration = Duration::from_millis(20);

/// Runs the watches and rebuilds forever.
pub async fn run(client: Client, domain: String, resolver: Arc<Resolver>) {
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    let svc_stream = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let eps_stream = reflector::reflector(
        eps_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let n1 = changed.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(svc_stream);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "dns: service watch");
            }
            n1.notify_one();
        }
    });
    let n2 = changed.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(eps_stream);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "dns: endpointslice watch");
            }
            n2.notify_one();
        }
    });
    loop {
        changed.notified().await;
        tokio::time::sleep(COALESCE).await;
        let services: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
        let slices: Vec<EndpointSlice> = eps_store.state().iter().map(|s| (**s).clone()).collect();
        resolver.set_zone(Zone::build(&domain, &services, &slices));
    }
}
