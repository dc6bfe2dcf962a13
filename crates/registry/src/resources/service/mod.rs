//! Services: defaulted as upstream defaults them, given a cluster IP and
//! node ports from the shared ranges, and giving them back on delete.
//!
//! Upstream counterpart: `pkg/registry/core/service/strategy.go`,
//! `SetDefaults_Service` in `pkg/apis/core/v1/defaults.go`, and the
//! allocation done by the service REST storage (`storage/alloc.go`).

pub mod allocator;
mod defaults;
mod validation;

#[cfg(test)]
mod allocator_tests;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use rkube_machinery::{FieldError, FieldPath, GroupKind, StatusError};
use serde_json::{json, Value};

use crate::resources::util::{child, default_str, items, str_at};
use crate::strategy::copy_field;
use crate::Strategy;
use allocator::{AllocError, Allocator};

pub use defaults::{carry_allocations, default_service};
pub use validation::{validate_service, validate_service_update};

pub struct ServiceStrategy {
    /// `None`: services keep what they ask for and get nothing allocated
    /// (until the API server wires a store-backed allocator in).
    allocator: Option<Arc<dyn Allocator>>,
}

impl ServiceStrategy {
    pub fn new(allocator: Arc<dyn Allocator>) -> ServiceStrategy {
        ServiceStrategy {
            allocator: Some(allocator),
        }
    }

    /// Allocating from `cidr` (e.g. 10.43.0.0/16) and `node_ports` (e.g.
    /// 30000..=32767) over `store`; `None` when the CIDR is not IPv4.
    pub fn over_store(
        store: Arc<dyn rkube_storage::Store>,
        cidr: &str,
        node_ports: std::ops::RangeInclusive<u16>,
    ) -> Option<ServiceStrategy> {
        let cidr = allocator::Ipv4Cidr::parse(cidr)?;
        let alloc = allocator::StoreAllocator::new(store, cidr, node_ports);
        Some(ServiceStrategy::new(Arc::new(alloc)))
    }

    pub fn without_allocation() -> ServiceStrategy {
        ServiceStrategy { allocator: None }
    }
}

/// Which node ports a service holds: its ports' and its health check's.
fn node_ports(svc: &Value) -> Vec<u16> {
    let spec = svc.get("spec").unwrap_or(&Value::Null);
    let mut out: Vec<u16> = items(spec, "ports")
        .iter()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .chain(spec.get("healthCheckNodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok().filter(|&p| p != 0))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn cluster_ip(svc: &Value) -> Option<IpAddr> {
    str_at(svc, "/spec/clusterIP").parse().ok()
}

fn needs_cluster_ip(svc: &Value) -> bool {
    str_at(svc, "/spec/type") != "ExternalName" && str_at(svc, "/spec/clusterIP") != "None"
}

fn needs_node_ports(svc: &Value) -> bool {
    match str_at(svc, "/spec/type") {
        "NodePort" => true,
        "LoadBalancer" => {
            svc.pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

fn invalid(svc: &Value, errs: Vec<FieldError>) -> StatusError {
    StatusError::invalid(&GroupKind::core("Service"), crate::meta::name(svc), &errs)
}

impl ServiceStrategy {
    /// Allocate what `svc` needs and `held` does not already hold; on
    /// failure give back what this call took.
    async fn allocate(
        &self,
        svc: &mut Value,
        held: &Value,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let Some(alloc) = &self.allocator else {
            return Ok(());
        };
        // Every step below writes into the object's map.
        if !svc.is_object() {
            return Err(StatusError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let mut taken_ip = None;
        let mut taken_ports = Vec::new();
        let res = self
            .allocate_into(
                alloc.as_ref(),
                svc,
                held,
                dry_run,
                &mut taken_ip,
                &mut taken_ports,
            )
            .await;
        if res.is_err() && !dry_run {
            if let Some(ip) = taken_ip {
                let _ = alloc.release_cluster_ip(ip).await;
            }
            for p in taken_ports {
                let _ = alloc.release_node_port(p).await;
            }
        }
        res
    }

    async fn allocate_into(
        &self,
        alloc: &dyn Allocator,
        svc: &mut Value,
        held: &Value,
        dry_run: bool,
        taken_ip: &mut Option<IpAddr>,
        taken_ports: &mut Vec<u16>,
    ) -> Result<(), StatusError> {
        let ty = str_at(svc, "/spec/type").to_string();
        if ty != "ExternalName" {
            let spec = child(svc.as_object_mut().expect("validated object"), "spec");
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
            default_str(spec, "ipFamilyPolicy", "SingleStack");
        }
        if needs_cluster_ip(svc) {
            let requested = cluster_ip(svc);
            if requested.is_none() || requested != cluster_ip(held) {
                let ip = alloc
                    .allocate_cluster_ip(requested, dry_run)
                    .await
                    .map_err(|e| match (requested, e) {
                        (
                            Some(ip),
                            e @ (AllocError::IpAllocated | AllocError::IpNotInRange { .. }),
                        ) => {
                            let path = FieldPath::new("spec").child("clusterIPs");
                            invalid(
                                svc,
                                vec![FieldError::invalid(
                                    &path,
                                    json!([ip.to_string()]),
                                    format!("failed to allocate IP {ip}: {e}"),
                                )],
                            )
                        }
                        (_, e) => StatusError::internal_error(format!(
                            "failed to allocate a serviceIP: {e}"
                        )),
                    })?;
                *taken_ip = Some(ip);
                let spec = child(svc.as_object_mut().expect("object"), "spec");
                spec.insert("clusterIP".into(), ip.to_string().into());
                spec.insert("clusterIPs".into(), json!([ip.to_string()]));
            }
        }
        if !needs_node_ports(svc) {
            return Ok(());
        }
        let already = node_ports(held);
        let count = items(svc.get("spec").unwrap_or(&Value::Null), "ports").len();
        for i in 0..count {
            let path = FieldPath::new("spec")
                .child("ports")
                .index(i)
                .child("nodePort");
            let current = svc
                .pointer(&format!("/spec/ports/{i}/nodePort"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let requested = u16::try_from(current).ok().filter(|&p| p != 0);
            // Held before, or shared with an earlier port of this service
            // (same number, other protocol).
            if requested.is_some_and(|p| already.contains(&p) || taken_ports.contains(&p)) {
                continue;
            }
            let port = alloc
                .allocate_node_port(requested, dry_run)
                .await
                .map_err(|e| match (requested, e) {
                    (
                        Some(p),
                        e @ (AllocError::PortAllocated | AllocError::PortNotInRange { .. }),
                    ) => invalid(
                        svc,
                        vec![FieldError::invalid(&path, i64::from(p), e.to_string())],
                    ),
                    (_, e) => {
                        StatusError::internal_error(format!("failed to allocate a nodePort: {e}"))
                    }
                })?;
            taken_ports.push(port);
            if let Some(p) = svc
                .pointer_mut(&format!("/spec/ports/{i}"))
                .and_then(Value::as_object_mut)
            {
                p.insert("nodePort".into(), port.into());
            }
        }
        let local_lb = str_at(svc, "/spec/type") == "LoadBalancer"
            && str_at(svc, "/spec/externalTrafficPolicy") == "Local";
        let hc = svc
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if local_lb && (hc == 0 || !already.contains(&(hc as u16))) {
            let requested = u16::try_from(hc).ok().filter(|&p| p != 0);
            let port = alloc
                .allocate_node_port(requested, dry_run)
                .await
                .map_err(|e| {
                    let path = FieldPath::new("spec").child("healthCheckNodePort");
                    match requested {
                        Some(p) => invalid(
                            svc,
                            vec![FieldError::invalid(&path, i64::from(p), e.to_string())],
                        ),
                        None => StatusError::internal_error(format!(
                            "failed to allocate a nodePort: {e}"
                        )),
                    }
                })?;
            taken_ports.push(port);
            child(svc.as_object_mut().expect("object"), "spec")
                .insert("healthCheckNodePort".into(), port.into());
        }
        Ok(())
    }
}

impl Strategy for ServiceStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        default_service(obj);
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_service(obj)
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        default_service(new);
        carry_allocations(new, old);
        copy_field(new, old, "status");
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_service_update(new, old)
    }

    fn before_create<'a>(
        &'a self,
        obj: &'a mut Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move { self.allocate(obj, &Value::Null, dry_run).await })
    }

    fn before_update<'a>(
        &'a self,
        new: &'a mut Value,
        old: &'a Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move { self.allocate(new, old, dry_run).await })
    }

    fn release<'a>(
        &'a self,
        kept: &'a Value,
        dropped: &'a Value,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move {
            let Some(alloc) = &self.allocator else {
                return Ok(());
            };
            if let Some(ip) = cluster_ip(dropped).filter(|ip| cluster_ip(kept) != Some(*ip)) {
                alloc
                    .release_cluster_ip(ip)
                    .await
                    .map_err(StatusError::internal_error)?;
            }
            let keep = node_ports(kept);
            for p in node_ports(dropped)
                .into_iter()
                .filter(|p| !keep.contains(p))
            {
                alloc
                    .release_node_port(p)
                    .await
                    .map_err(StatusError::internal_error)?;
            }
            Ok(())
        })
    }
}
