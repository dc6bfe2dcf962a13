//! Tables of the core kinds other than pods and their controllers.
//!
//! Upstream counterpart: printService, printEndpoints, printEndpointSlice,
//! printNode, printNamespace, printConfigMap, printSecret,
//! printServiceAccount, printEvent, printPersistentVolume(Claim),
//! printResourceQuota and printComponentStatus in
//! pkg/printers/internalversion/printers.go.

mod event;
mod service;
mod storage;

use super::format::list_with_more;
use super::{age, age_column, column, decode, doc, name, name_column, wide, Printer};
use k8s_openapi::api::{core::v1 as core, discovery::v1 as discovery};
use std::collections::BTreeSet;

pub(super) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("", "Service") => &service::SERVICE,
        ("", "Endpoints") => &ENDPOINTS,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        ("", "Node") => &NODE,
        ("", "Namespace") => &NAMESPACE,
        ("", "ConfigMap") => &CONFIG_MAP,
        ("", "Secret") => &SECRET,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "Event") | ("events.k8s.io", "Event") => &event::EVENT,
        ("", "PersistentVolume") => &storage::PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => &storage::PERSISTENT_VOLUME_CLAIM,
        ("", "ResourceQuota") => &storage::RESOURCE_QUOTA,
        ("", "ComponentStatus") => &COMPONENT_STATUS,
        _ => return None,
    })
}

static ENDPOINTS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Endpoints",
                "string",
                doc("io.k8s.api.core.v1.Endpoints", "subsets"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let ep: core::Endpoints = decode("Endpoints", object)?;
        Ok(vec![
            name(&ep.metadata),
            format_endpoints(ep.subsets.as_deref().unwrap_or_default()).into(),
            age(&ep.metadata, now),
        ])
    },
};

/// `ip:port` for every ready address and port, at most three, then
/// " + N more..."; headless subsets without ports list bare IPs.
fn format_endpoints(subsets: &[core::EndpointSubset]) -> String {
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = subset.addresses.as_deref().unwrap_or_default();
        let ports = subset.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            count += addresses.len();
            list.extend(addresses.iter().map(|a| a.ip.clone()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            list.extend(addresses.iter().map(|a| {
                if a.ip.contains(':') {
                    format!("[{}]:{}", a.ip, port.port)
                } else {
                    format!("{}:{}", a.ip, port.port)
                }
            }));
        }
    }
    list.truncate(MAX);
    let shown = list.join(",");
    if count > MAX {
        format!("{shown} + {} more...", count - MAX)
    } else {
        shown
    }
}

static ENDPOINT_SLICE: Printer = Printer {
    columns: || {
        let slice = "io.k8s.api.discovery.v1.EndpointSlice";
        vec![
            name_column(),
            column("AddressType", "string", doc(slice, "addressType")),
            column("Ports", "string", doc(slice, "ports")),
            column("Endpoints", "string", doc(slice, "endpoints")),
            age_column(),
        ]
    },
    row: |object, now| {
        let slice: discovery::EndpointSlice = decode("EndpointSlice", object)?;
        let ports: Vec<String> = slice
            .ports
            .iter()
            .flatten()
            .map(|p| match (p.port, &p.name) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.clone(),
                (None, None) => "*".to_owned(),
            })
            .collect();
        let addresses: Vec<String> = slice
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().cloned())
            .collect();
        Ok(vec![
            name(&slice.metadata),
            slice.address_type.into(),
            list_with_more(&ports, 3).into(),
            list_with_more(&addresses, 3).into(),
            age(&slice.metadata, now),
        ])
    },
};

const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

static NODE: Printer = Printer {
    columns: || {
        let info = "io.k8s.api.core.v1.NodeSystemInfo";
        let addresses = doc("io.k8s.api.core.v1.NodeStatus", "addresses");
        vec![
            name_column(),
            column("Status", "string", "The status of the node"),
            column("Roles", "string", "The roles of the node"),
            age_column(),
            column("Version", "string", doc(info, "kubeletVersion")),
            wide(column("Internal-IP", "string", addresses)),
            wide(column("External-IP", "string", addresses)),
            wide(column("OS-Image", "string", doc(info, "osImage"))),
            wide(column(
                "Kernel-Version",
                "string",
                doc(info, "kernelVersion"),
            )),
            wide(column(
                "Container-Runtime",
                "string",
                doc(info, "containerRuntimeVersion"),
            )),
        ]
    },
    row: |object, now| {
        let node: core::Node = decode("Node", object)?;
        let status = node.status.unwrap_or_default();
        // Only the Ready condition makes it into STATUS.
        let mut state: Vec<String> = status
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.type_ == "Ready")
            .take(1)
            .map(|c| {
                if c.status == "True" {
                    "Ready".to_owned()
                } else {
                    "NotReady".to_owned()
                }
            })
            .collect();
        if state.is_empty() {
            state.push("Unknown".to_owned());
        }
        if node.spec.and_then(|s| s.unschedulable) == Some(true) {
            state.push("SchedulingDisabled".to_owned());
        }
        let mut roles = BTreeSet::new();
        for (k, v) in node.metadata.labels.iter().flatten() {
            if let Some(role) = k.strip_prefix(NODE_ROLE_PREFIX) {
                if !role.is_empty() {
                    roles.insert(role.to_owned());
                }
            } else if k == NODE_ROLE_LABEL && !v.is_empty() {
                roles.insert(v.clone());
            }
        }
        let roles = if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.into_iter().collect::<Vec<_>>().join(",")
        };
        let address = |type_: &str| {
            status
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == type_)
                .map_or_else(|| "<none>".to_owned(), |a| a.address.clone())
        };
        let info = status.node_info.clone().unwrap_or_default();
        let known = |s: String| {
            if s.is_empty() {
                "<unknown>".to_owned()
            } else {
                s
            }
        };
        Ok(vec![
            name(&node.metadata),
            state.join(",").into(),
            roles.into(),
            age(&node.metadata, now),
            info.kubelet_version.into(),
            address("InternalIP").into(),
            address("ExternalIP").into(),
            known(info.os_image).into(),
            known(info.kernel_version).into(),
            known(info.container_runtime_version).into(),
        ])
    },
};

static NAMESPACE: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column("Status", "string", "The status of the namespace"),
            age_column(),
        ]
    },
    row: |object, now| {
        let ns: core::Namespace = decode("Namespace", object)?;
        let phase = ns.status.and_then(|s| s.phase).unwrap_or_default();
        Ok(vec![
            name(&ns.metadata),
            phase.into(),
            age(&ns.metadata, now),
        ])
    },
};

static CONFIG_MAP: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Data",
                "string",
                doc("io.k8s.api.core.v1.ConfigMap", "data"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let cm: core::ConfigMap = decode("ConfigMap", object)?;
        let count = cm.data.map_or(0, |d| d.len()) + cm.binary_data.map_or(0, |d| d.len());
        Ok(vec![
            name(&cm.metadata),
            count.into(),
            age(&cm.metadata, now),
        ])
    },
};

static SECRET: Printer = Printer {
    columns: || {
        let secret = "io.k8s.api.core.v1.Secret";
        vec![
            name_column(),
            column("Type", "string", doc(secret, "type")),
            column("Data", "string", doc(secret, "data")),
            age_column(),
        ]
    },
    row: |object, now| {
        let secret: core::Secret = decode("Secret", object)?;
        Ok(vec![
            name(&secret.metadata),
            secret.type_.unwrap_or_default().into(),
            secret.data.map_or(0, |d| d.len()).into(),
            age(&secret.metadata, now),
        ])
    },
};

static SERVICE_ACCOUNT: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Secrets",
                "string",
                doc("io.k8s.api.core.v1.ServiceAccount", "secrets"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let sa: core::ServiceAccount = decode("ServiceAccount", object)?;
        Ok(vec![
            name(&sa.metadata),
            sa.secrets.map_or(0, |s| s.len()).into(),
            age(&sa.metadata, now),
        ])
    },
};

static COMPONENT_STATUS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column("Status", "string", "Status of the component conditions"),
            column("Message", "string", "Message of the component conditions"),
            column("Error", "string", "Error of the component conditions"),
        ]
    },
    row: |object, _now| {
        let cs: core::ComponentStatus = decode("ComponentStatus", object)?;
        let healthy = cs
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Healthy");
        let (status, message, error) = match healthy {
            Some(c) => (
                if c.status == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                },
                c.message.clone().unwrap_or_default(),
                c.error.clone().unwrap_or_default(),
            ),
            None => ("Unknown", String::new(), String::new()),
        };
        Ok(vec![
            name(&cs.metadata),
            status.into(),
            message.into(),
            error.into(),
        ])
    },
};
