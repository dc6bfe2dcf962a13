//! What a namespace uses of each resource a quota limits — pure.
//!
//! Upstream counterpart: the quota evaluators of `pkg/quota/v1/evaluator/
//! core` (pods.go, services.go, persistent_volume_claims.go) and the
//! generic object-count evaluator. Only resources the quota names get a
//! `used` entry, as upstream masks usage by `spec.hard`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::quantity::Quantity;
use crate::endpoints::index::is_terminal;

/// The objects of one namespace that quotas count.
#[derive(Default)]
pub struct Namespace<'a> {
    pub pods: &'a [Arc<Pod>],
    pub services: &'a [Arc<Service>],
    pub claims: &'a [Arc<PersistentVolumeClaim>],
    /// Object counts by `count/<resource>[.<group>]` name.
    pub counts: BTreeMap<String, i64>,
}

/// Whether a pod is counted under the quota's scopes (Terminating,
/// NotTerminating, BestEffort, NotBestEffort; others match nothing).
fn in_scopes(pod: &Pod, scopes: &[String]) -> bool {
    let spec = pod.spec.as_ref();
    let terminating = spec.and_then(|s| s.active_deadline_seconds).is_some();
    let best_effort = spec.is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .all(|c| {
                c.resources.as_ref().is_none_or(|r| {
                    r.requests.as_ref().is_none_or(|m| m.is_empty())
                        && r.limits.as_ref().is_none_or(|m| m.is_empty())
                })
            })
    });
    scopes.iter().all(|s| match s.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => false,
    })
}

fn container_amount(c: &Container, limits: bool, resource: &str) -> Quantity {
    let r = c.resources.as_ref();
    let map = if limits {
        r.and_then(|r| r.limits.as_ref())
    } else {
        r.and_then(|r| r.requests.as_ref())
    };
    map.and_then(|m| m.get(resource))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or_default()
}

/// A pod's request (or limit) of `resource`: the larger of its
/// containers' sum and its biggest init container, plus overhead.
pub fn pod_amount(pod: &Pod, limits: bool, resource: &str) -> Quantity {
    let Some(spec) = pod.spec.as_ref() else {
        return Quantity::default();
    };
    let sum = spec
        .containers
        .iter()
        .map(|c| container_amount(c, limits, resource))
        .fold(Quantity::default(), Quantity::plus);
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_amount(c, limits, resource))
        .max_by_key(|q| q.milli)
        .unwrap_or_default();
    let mut total = if init.milli > sum.milli { init } else { sum };
    if let Some(o) = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| Quantity::parse(&q.0).ok())
    {
        total = total.plus(o);
    }
    total
}

/// The `used` the quota should show.
pub fn used(quota: &ResourceQuota, ns: &Namespace) -> BTreeMap<String, ApiQuantity> {
    let spec = quota.spec.clone().unwrap_or_default();
    let scopes = spec.scopes.clone().unwrap_or_default();
    let pods: Vec<&Arc<Pod>> = ns
        .pods
        .iter()
        .filter(|p| !is_terminal(p) && in_scopes(p, &scopes))
        .collect();
    let sum_pods = |limits: bool, resource: &str| {
        pods.iter()
            .map(|p| pod_amount(p, limits, resource))
            .fold(Quantity::default(), Quantity::plus)
    };
    let mut out = BTreeMap::new();
    for name in spec.hard.unwrap_or_default().keys() {
        let pod_value = match name.as_str() {
            "pods" | "count/pods" => Some(Quantity::count(pods.len() as i64)),
            "cpu" | "requests.cpu" => Some(sum_pods(false, "cpu")),
            "memory" | "requests.memory" => Some(sum_pods(false, "memory")),
            "ephemeral-storage" | "requests.ephemeral-storage" => {
                Some(sum_pods(false, "ephemeral-storage"))
            }
            "limits.cpu" => Some(sum_pods(true, "cpu")),
            "limits.memory" => Some(sum_pods(true, "memory")),
            "limits.ephemeral-storage" => Some(sum_pods(true, "ephemeral-storage")),
            _ => None,
        };
        let value = match pod_value {
            Some(v) => Some(v),
            // Scoped quotas track pods only.
            None if !scopes.is_empty() => None,
            None => other_value(name, ns),
        };
        if let Some(v) = value {
            out.insert(name.clone(), ApiQuantity(v.to_string()));
        }
    }
    out
}

fn service_node_ports(svc: &Service) -> i64 {
    let Some(spec) = svc.spec.as_ref() else {
        return 0;
    };
    let ports = spec.ports.as_deref().unwrap_or_default();
    match spec.type_.as_deref() {
        Some("NodePort") => ports.len() as i64,
        Some("LoadBalancer") => ports.iter().filter(|p| p.node_port.is_some()).count() as i64,
        _ => 0,
    }
}

fn other_value(name: &str, ns: &Namespace) -> Option<Quantity> {
    let count = |n: usize| Some(Quantity::count(n as i64));
    match name {
        "services" | "count/services" => count(ns.services.len()),
        "services.nodeports" => Some(Quantity::count(
            ns.services.iter().map(|s| service_node_ports(s)).sum(),
        )),
        "services.loadbalancers" => count(
            ns.services
                .iter()
                .filter(|s| {
                    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
                })
                .count(),
        ),
        "persistentvolumeclaims" | "count/persistentvolumeclaims" => count(ns.claims.len()),
        "requests.storage" => Some(
            ns.claims
                .iter()
                .filter_map(|c| {
                    let r = c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
                    Quantity::parse(&r.get("storage")?.0).ok()
                })
                .fold(Quantity::default(), Quantity::plus),
        ),
        _ => {
            let key = if name.starts_with("count/") {
                name.to_string()
            } else {
                format!("count/{name}")
            };
            ns.counts.get(&key).map(|n| Quantity::count(*n))
        }
    }
}
