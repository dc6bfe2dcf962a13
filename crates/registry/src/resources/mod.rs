//! The resources whose rules differ from the default, one module each
//! (upstream: `pkg/registry/<group>/<resource>/strategy.go`).

pub mod certificates;
pub mod cluster;
pub mod config;
#[cfg(test)]
mod config_tests;
pub mod crd;
pub mod csi;
pub mod event;
mod namespace;
pub mod networking;
pub mod node;
pub mod pod;
pub mod quantity;
pub mod quota;
pub mod rbac;
pub mod service;
pub mod slices;
#[cfg(test)]
mod store_tests;
pub(crate) mod util;
pub mod volumes;
pub mod webhooks;
pub mod workloads;

use std::sync::Arc;

use rkube_api::catalog::ResourceInfo;

use crate::{DefaultStrategy, Strategy};

/// The strategy of a resource. Resources without their own rules get the
/// default, shaped by whether they have a status subresource.
pub fn strategy_for(info: &'static ResourceInfo) -> Arc<dyn Strategy> {
    match (info.group, info.plural) {
        ("", "namespaces") => Arc::new(namespace::NamespaceStrategy),
        ("", "pods") => Arc::new(pod::PodStrategy),
        ("", "configmaps") => Arc::new(config::ConfigMapStrategy),
        ("", "secrets") => Arc::new(config::SecretStrategy),
        ("", "nodes") => Arc::new(node::NodeStrategy),
        ("", "limitranges") => Arc::new(quota::LimitRangeStrategy),
        ("", "resourcequotas") => Arc::new(quota::ResourceQuotaStrategy),
        ("", "events") => Arc::new(event::EventStrategy),
        ("events.k8s.io", "events") => Arc::new(event::EventsV1Strategy),
        ("", "services") => Arc::new(service::ServiceStrategy::without_allocation()),
        ("", "persistentvolumes") => Arc::new(volumes::PersistentVolumeStrategy),
        ("", "persistentvolumeclaims") => Arc::new(volumes::PersistentVolumeClaimStrategy),
        ("storage.k8s.io", "storageclasses") => Arc::new(volumes::StorageClassStrategy),
        ("storage.k8s.io", "csidrivers") => Arc::new(csi::CsiDriverStrategy),
        ("storage.k8s.io", "csinodes") => Arc::new(csi::CsiNodeStrategy),
        ("storage.k8s.io", "volumeattachments") => Arc::new(csi::VolumeAttachmentStrategy),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => {
            Arc::new(webhooks::WebhookConfigurationStrategy {
                kind: webhooks::WebhookKind::Mutating,
            })
        }
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            Arc::new(webhooks::WebhookConfigurationStrategy {
                kind: webhooks::WebhookKind::Validating,
            })
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            Arc::new(webhooks::PolicyStrategy { binding: false })
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings") => {
            Arc::new(webhooks::PolicyStrategy { binding: true })
        }
        ("policy", "poddisruptionbudgets") => Arc::new(cluster::PdbStrategy),
        ("scheduling.k8s.io", "priorityclasses") => Arc::new(cluster::PriorityClassStrategy),
        ("coordination.k8s.io", "leases") => Arc::new(cluster::LeaseStrategy),
        ("autoscaling", "horizontalpodautoscalers") => Arc::new(cluster::HpaStrategy {
            v2: info.version == "v2",
        }),
        ("networking.k8s.io", "ingresses") => Arc::new(networking::IngressStrategy),
        ("networking.k8s.io", "ingressclasses") => Arc::new(networking::IngressClassStrategy),
        ("networking.k8s.io", "networkpolicies") => Arc::new(networking::NetworkPolicyStrategy),
        ("certificates.k8s.io", "certificatesigningrequests") => {
            Arc::new(certificates::CsrStrategy)
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => Arc::new(crd::CrdStrategy),
        ("discovery.k8s.io", "endpointslices") => Arc::new(slices::EndpointSliceStrategy),
        ("node.k8s.io", "runtimeclasses") => Arc::new(cluster::RuntimeClassStrategy),
        (group, plural) if rbac::RbacKind::of(group, plural).is_some() => {
            let kind = rbac::RbacKind::of(group, plural).expect("checked");
            Arc::new(rbac::RbacStrategy { kind })
        }
        (group, plural) if workloads::Kind::of(group, plural).is_some() => {
            let kind = workloads::Kind::of(group, plural).expect("checked");
            Arc::new(workloads::WorkloadStrategy { kind })
        }
        _ => {
            let has_status = info.subresource("status").is_some();
            let tracks_generation = has_status
                && !matches!(
                    info.plural,
                    "pods" | "nodes" | "services" | "persistentvolumes" | "persistentvolumeclaims"
                );
            Arc::new(DefaultStrategy {
                has_status,
                tracks_generation,
                allow_create_on_update: false,
            })
        }
    }
}
