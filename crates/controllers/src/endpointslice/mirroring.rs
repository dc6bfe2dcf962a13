//! EndpointSlice mirroring: user-managed Endpoints (those of Services
//! without a selector) copied into EndpointSlices, so that consumers of
//! slices (the service proxy, DNS) see them too.
//!
//! Upstream counterpart: `pkg/controller/endpointslicemirroring`. An
//! Endpoints object is mirrored when its Service exists and has no
//! selector, it does not carry `endpointslice.kubernetes.io/skip-mirror:
//! "true"` (the Endpoints controller puts that on the objects it writes)
//! and it is not a leader-election record. Mirrored slices carry the
//! Endpoints' labels, `kubernetes.io/service-name`, the managed-by value
//! `endpointslicemirroring-controller.k8s.io` and a controller reference
//! to the Endpoints; ready addresses become ready endpoints, not-ready
//! ones not-ready; at most 1000 endpoints are mirrored, as upstream. The
//! controller runs beside the EndpointSlice controller (started by it), and
//! writes only the slices that change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::reconcile::{
    add_to_groups, place, Groups, Plan, Template, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE,
    SERVICE_NAME_LABEL,
};
use super::{apply_plan, Error, Expectations};
use crate::endpoints::Backoff;
use crate::informers::Informers;

pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
pub use crate::endpoints::build::SKIP_MIRROR;
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Upstream mirrors at most this many endpoints per Endpoints object.
pub const MAX_MIRRORED: usize = 1000;

/// Whether `ep` is mirrored, given its Service.
pub fn should_mirror(ep: &Endpoints, svc: Option<&Service>) -> bool {
    let Some(svc) = svc else {
        return false;
    };
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    !has_selector
        && ep.labels().get(SKIP_MIRROR).map(String::as_str) != Some("true")
        && !ep.annotations().contains_key(LEADER_ANNOTATION)
}

/// The slices' shape for `ep`.
pub fn template(ep: &Endpoints) -> Template {
    let mut labels = ep.labels().clone();
    labels.remove(SKIP_MIRROR);
    labels.insert(SERVICE_NAME_LABEL.into(), ep.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    Template {
        namespace: ep.namespace(),
        generate_name: format!("{}-", ep.name_any()),
        labels,
        owner: OwnerReference {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            name: ep.name_any(),
            uid: ep.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
        placeholder: false,
    }
}

/// The endpoints of `ep` grouped by port set (IPv4 addresses only).
pub fn desired(ep: &Endpoints) -> Groups {
    let mut groups = Groups::new();
    let mut total = 0;
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        for (addr, ready) in ready.chain(not_ready) {
            if total >= MAX_MIRRORED {
                return groups;
            }
            if addr.ip.contains(':') {
                continue;
            }
            total += 1;
            let endpoint = Endpoint {
                addresses: vec![addr.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    ..EndpointConditions::default()
                }),
                hostname: addr.hostname.clone(),
                node_name: addr.node_name.clone(),
                target_ref: addr.target_ref.clone(),
                ..Endpoint::default()
            };
            add_to_groups(&mut groups, ports.clone(), endpoint);
        }
    }
    groups
}

/// The writes for one Endpoints object and its mirrored slices.
pub fn reconcile(ep: &Endpoints, svc: Option<&Service>, slices: &[Arc<EndpointSlice>]) -> Plan {
    if !should_mirror(ep, svc) || ep.metadata.deletion_timestamp.is_some() {
        return Plan {
            delete: slices
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect(),
            ..Plan::default()
        };
    }
    place(
        desired(ep),
        slices,
        &template(ep),
        None,
        MAX_ENDPOINTS_PER_SLICE,
    )
}

struct Ctx {
    client: kube::Client,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    expectations: Expectations,
    backoff: Backoff,
}

fn mirrored_slices(store: &Store<EndpointSlice>, ns: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
    store
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .filter(|s| {
            let l = s.labels();
            l.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
                && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME)
        })
        .collect()
}

async fn sync(ep: Arc<Endpoints>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ep.namespace().unwrap_or_default();
    let name = ep.name_any();
    let key = format!("{ns}/{name}");
    if !ctx.expectations.satisfied(&key, &ns, &ctx.slices) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let svc = ctx.services.get(&ObjectRef::new(&name).within(&ns));
    let slices = mirrored_slices(&ctx.slices, &ns, &name);
    let plan = reconcile(&ep, svc.as_deref(), &slices);
    apply_plan(&ctx.client, &ctx.expectations, &ns, &key, plan).await
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let endpoints = informers.store::<Endpoints>();
    let services = informers.store::<Service>();
    let slices = informers.store::<EndpointSlice>();
    for ready in [
        endpoints.wait_until_ready().await,
        services.wait_until_ready().await,
        slices.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    let ctx = Arc::new(Ctx {
        client,
        services,
        slices,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    Controller::for_shared_stream(informers.shared_stream::<Endpoints>(), endpoints)
        .watches_shared_stream(informers.shared_stream::<Service>(), |svc: Arc<Service>| {
            let ns = svc.namespace().unwrap_or_default();
            Some(ObjectRef::<Endpoints>::new(&svc.name_any()).within(&ns))
        })
        .watches_shared_stream(
            informers.shared_stream::<EndpointSlice>(),
            |s: Arc<EndpointSlice>| {
                let ns = s.namespace().unwrap_or_default();
                let l: &BTreeMap<String, String> = s.labels();
                (l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME))
                    .then(|| l.get(SERVICE_NAME_LABEL))
                    .flatten()
                    .map(|name| ObjectRef::<Endpoints>::new(name).within(&ns))
            },
        )
        .run(
            |ep, ctx: Arc<Ctx>| async move {
                let key = format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any());
                let out = sync(ep, ctx.clone()).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |ep, err, ctx| {
                let key = format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any());
                tracing::warn!(endpoints = %key, error = %err, "endpoint slice mirroring failed");
                Action::requeue(ctx.backoff.failed(&key))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints(labels: serde_json::Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "default", "uid": "ep-uid", "labels": labels},
            "subsets": [
                {"addresses": [{"ip": "192.168.1.10"}, {"ip": "192.168.1.11"}],
                 "notReadyAddresses": [{"ip": "192.168.1.12"}],
                 "ports": [{"name": "http", "port": 8080}]},
                {"addresses": [{"ip": "192.168.1.20"}, {"ip": "fd00::1"}],
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}
            ]
        }))
        .unwrap()
    }

    fn service(selector: Option<serde_json::Value>) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"selector": selector, "ports": [{"port": 80}]}
        }))
        .unwrap()
    }

    #[test]
    fn user_endpoints_of_selectorless_services_are_mirrored_per_port_set() {
        let ep = endpoints(json!({"team": "a"}));
        let plan = reconcile(&ep, Some(&service(None)), &[]);
        assert_eq!(plan.create.len(), 2, "{plan:?}");
        let http = plan
            .create
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == Some(8080))
            .unwrap();
        let ready: Vec<(String, Option<bool>)> = http
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready))
            .collect();
        assert_eq!(ready.len(), 3);
        assert!(ready.contains(&("192.168.1.12".into(), Some(false))));
        let labels = http.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "ext");
        assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
        assert_eq!(labels["team"], "a");
        let owner = &http.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Endpoints", "ep-uid")
        );
        // The IPv6 address is not in an IPv4 slice.
        let dns = plan
            .create
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == Some(53))
            .unwrap();
        assert_eq!(dns.endpoints.len(), 1);
    }

    #[test]
    fn controller_managed_or_selector_services_are_not_mirrored() {
        let ep = endpoints(json!({SKIP_MIRROR: "true"}));
        assert!(!should_mirror(&ep, Some(&service(None))));
        let plain = endpoints(json!({}));
        assert!(!should_mirror(
            &plain,
            Some(&service(Some(json!({"app": "x"}))))
        ));
        assert!(!should_mirror(&plain, None));
        // Slices mirrored before are deleted then.
        let made = reconcile(&plain, Some(&service(None)), &[]);
        let existing: Vec<Arc<EndpointSlice>> = made
            .create
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.metadata.name = Some(format!("ext-{i}"));
                Arc::new(s)
            })
            .collect();
        assert!(reconcile(&plain, Some(&service(None)), &existing).is_empty());
        let gone = reconcile(&plain, None, &existing);
        assert_eq!(gone.delete, ["ext-0", "ext-1"]);
    }
}
