//! Tables of networking, RBAC, storage, scheduling, certificates, admission
//! and API registration kinds.
//!
//! Upstream counterpart: the corresponding print functions of
//! pkg/printers/internalversion/printers.go, and kube-aggregator's APIService
//! table convertor (pkg/registry/apiservice/etcd).

mod more;

use super::format::label_selector;
use super::{
    age, age_column, column, decode, doc, human_duration, name, name_column, wide, Printer,
};
use k8s_openapi::api::{
    certificates::v1 as certs, coordination::v1 as coordination, networking::v1 as networking,
    node::v1 as node, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::jiff::SignedDuration;
use std::collections::BTreeSet;

pub(super) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("storage.k8s.io", "StorageClass") => &STORAGE_CLASS,
        ("networking.k8s.io", "Ingress") => &INGRESS,
        ("networking.k8s.io", "IngressClass") => &INGRESS_CLASS,
        ("networking.k8s.io", "NetworkPolicy") => &NETWORK_POLICY,
        ("rbac.authorization.k8s.io", "RoleBinding") => &ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &CLUSTER_ROLE_BINDING,
        ("coordination.k8s.io", "Lease") => &LEASE,
        ("scheduling.k8s.io", "PriorityClass") => &PRIORITY_CLASS,
        ("certificates.k8s.io", "CertificateSigningRequest") => &CSR,
        ("node.k8s.io", "RuntimeClass") => &RUNTIME_CLASS,
        _ => return more::printer(group, kind),
    })
}

const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

static STORAGE_CLASS: Printer = Printer {
    columns: || {
        let sc = "io.k8s.api.storage.v1.StorageClass";
        vec![
            name_column(),
            column("Provisioner", "string", doc(sc, "provisioner")),
            column("ReclaimPolicy", "string", doc(sc, "reclaimPolicy")),
            column("VolumeBindingMode", "string", doc(sc, "volumeBindingMode")),
            column(
                "AllowVolumeExpansion",
                "string",
                doc(sc, "allowVolumeExpansion"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let sc: storage::StorageClass = decode("StorageClass", object)?;
        let is_default = sc.metadata.annotations.as_ref().is_some_and(|a| {
            DEFAULT_CLASS_ANNOTATIONS
                .iter()
                .any(|k| a.get(*k).map(String::as_str) == Some("true"))
        });
        let mut display = sc.metadata.name.clone().unwrap_or_default();
        if is_default {
            display.push_str(" (default)");
        }
        Ok(vec![
            display.into(),
            sc.provisioner.into(),
            sc.reclaim_policy.unwrap_or_else(|| "Delete".into()).into(),
            sc.volume_binding_mode
                .unwrap_or_else(|| "Immediate".into())
                .into(),
            sc.allow_volume_expansion.unwrap_or(false).into(),
            age(&sc.metadata, now),
        ])
    },
};

static INGRESS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Class",
                "string",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            column(
                "Hosts",
                "string",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            column(
                "Address",
                "string",
                "Address is a list containing ingress points for the load-balancer",
            ),
            column("Ports", "string", "Ports of TLS configurations that open"),
            age_column(),
        ]
    },
    row: |object, now| {
        let ing: networking::Ingress = decode("Ingress", object)?;
        let spec = ing.spec.clone().unwrap_or_default();
        let rules = spec.rules.as_deref().unwrap_or_default();
        // Up to three non-empty hosts; once three are collected, any further
        // rule makes it "+ N more..." with N counted over all rules.
        let mut hosts: Vec<&str> = Vec::new();
        let mut more = false;
        for rule in rules {
            if hosts.len() == 3 {
                more = true;
                break;
            }
            if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
                hosts.push(host);
            }
        }
        let hosts = if hosts.is_empty() {
            "*".to_owned()
        } else if more {
            format!("{} + {} more...", hosts.join(","), rules.len() - 3)
        } else {
            hosts.join(",")
        };
        let addresses: BTreeSet<String> = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| {
                i.ip.clone()
                    .filter(|ip| !ip.is_empty())
                    .or_else(|| i.hostname.clone().filter(|h| !h.is_empty()))
            })
            .collect();
        let ports = if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
            "80, 443"
        } else {
            "80"
        };
        Ok(vec![
            name(&ing.metadata),
            spec.ingress_class_name
                .unwrap_or_else(|| "<none>".into())
                .into(),
            hosts.into(),
            addresses.into_iter().collect::<Vec<_>>().join(",").into(),
            ports.into(),
            age(&ing.metadata, now),
        ])
    },
};

static INGRESS_CLASS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Controller",
                "string",
                "Controller that is responsible for handling this class",
            ),
            column(
                "Parameters",
                "string",
                "A reference to a resource with additional parameters",
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let class: networking::IngressClass = decode("IngressClass", object)?;
        let spec = class.spec.clone().unwrap_or_default();
        let parameters = spec.parameters.as_ref().map_or_else(
            || "<none>".to_owned(),
            |p| match &p.api_group {
                Some(group) => format!("{}.{group}/{}", p.kind, p.name),
                None => format!("{}/{}", p.kind, p.name),
            },
        );
        Ok(vec![
            name(&class.metadata),
            spec.controller.unwrap_or_default().into(),
            parameters.into(),
            age(&class.metadata, now),
        ])
    },
};

static NETWORK_POLICY: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Pod-Selector",
                "string",
                doc("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let np: networking::NetworkPolicy = decode("NetworkPolicy", object)?;
        let selector = np.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
        Ok(vec![
            name(&np.metadata),
            label_selector(selector).into(),
            age(&np.metadata, now),
        ])
    },
};

fn binding_columns(noun: &'static str) -> Vec<super::Column> {
    let (users, groups, sas) = match noun {
        "roleBinding" => (
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        ),
        _ => (
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        ),
    };
    vec![
        name_column(),
        column(
            "Role",
            "string",
            doc("io.k8s.api.rbac.v1.RoleBinding", "roleRef"),
        ),
        age_column(),
        wide(column("Users", "string", users)),
        wide(column("Groups", "string", groups)),
        wide(column("ServiceAccounts", "string", sas)),
    ]
}

/// Role reference, age, then users, groups and service accounts
/// ("namespace/name"), each joined by ", ".
fn binding_cells(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    role_ref: &rbac::RoleRef,
    subjects: &[rbac::Subject],
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<serde_json::Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in subjects {
        match s.kind.as_str() {
            "User" => users.push(s.name.clone()),
            "Group" => groups.push(s.name.clone()),
            "ServiceAccount" => sas.push(format!(
                "{}/{}",
                s.namespace.as_deref().unwrap_or_default(),
                s.name
            )),
            _ => {}
        }
    }
    vec![
        name(meta),
        format!("{}/{}", role_ref.kind, role_ref.name).into(),
        age(meta, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        sas.join(", ").into(),
    ]
}

static ROLE_BINDING: Printer = Printer {
    columns: || binding_columns("roleBinding"),
    row: |object, now| {
        let rb: rbac::RoleBinding = decode("RoleBinding", object)?;
        let subjects = rb.subjects.as_deref().unwrap_or_default();
        Ok(binding_cells(&rb.metadata, &rb.role_ref, subjects, now))
    },
};

static CLUSTER_ROLE_BINDING: Printer = Printer {
    columns: || binding_columns("clusterRoleBinding"),
    row: |object, now| {
        let crb: rbac::ClusterRoleBinding = decode("ClusterRoleBinding", object)?;
        let subjects = crb.subjects.as_deref().unwrap_or_default();
        Ok(binding_cells(&crb.metadata, &crb.role_ref, subjects, now))
    },
};

static LEASE: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Holder",
                "string",
                doc("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let lease: coordination::Lease = decode("Lease", object)?;
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        Ok(vec![
            name(&lease.metadata),
            holder.into(),
            age(&lease.metadata, now),
        ])
    },
};

static PRIORITY_CLASS: Printer = Printer {
    columns: || {
        let pc = "io.k8s.api.scheduling.v1.PriorityClass";
        vec![
            name_column(),
            column("Value", "integer", doc(pc, "value")),
            column("Global-Default", "boolean", doc(pc, "globalDefault")),
            age_column(),
            column("PreemptionPolicy", "string", doc(pc, "preemptionPolicy")),
        ]
    },
    row: |object, now| {
        let pc: scheduling::PriorityClass = decode("PriorityClass", object)?;
        Ok(vec![
            name(&pc.metadata),
            pc.value.into(),
            pc.global_default.unwrap_or(false).into(),
            age(&pc.metadata, now),
            pc.preemption_policy.unwrap_or_default().into(),
        ])
    },
};

static CSR: Printer = Printer {
    columns: || {
        let spec = "io.k8s.api.certificates.v1.CertificateSigningRequestSpec";
        vec![
            name_column(),
            age_column(),
            column("SignerName", "string", doc(spec, "signerName")),
            column("Requestor", "string", doc(spec, "request")),
            column(
                "RequestedDuration",
                "string",
                doc(spec, "expirationSeconds"),
            ),
            column(
                "Condition",
                "string",
                doc(
                    "io.k8s.api.certificates.v1.CertificateSigningRequestStatus",
                    "conditions",
                ),
            ),
        ]
    },
    row: |object, now| {
        let csr: certs::CertificateSigningRequest = decode("CertificateSigningRequest", object)?;
        let status = csr.status.clone().unwrap_or_default();
        let has = |t: &str| status.conditions.iter().flatten().any(|c| c.type_ == t);
        // Denied outranks Approved; Failed and Issued are appended.
        let mut condition = if has("Denied") {
            "Denied".to_owned()
        } else if has("Approved") {
            "Approved".to_owned()
        } else {
            "Pending".to_owned()
        };
        if has("Failed") {
            condition.push_str(",Failed");
        }
        if status.certificate.as_ref().is_some_and(|c| !c.0.is_empty()) {
            condition.push_str(",Issued");
        }
        let signer = if csr.spec.signer_name.is_empty() {
            "<none>".to_owned()
        } else {
            csr.spec.signer_name.clone()
        };
        let duration = csr.spec.expiration_seconds.map_or_else(
            || "<none>".to_owned(),
            |s| human_duration(SignedDuration::from_secs(i64::from(s))),
        );
        Ok(vec![
            name(&csr.metadata),
            age(&csr.metadata, now),
            signer.into(),
            csr.spec.username.clone().unwrap_or_default().into(),
            duration.into(),
            condition.into(),
        ])
    },
};

static RUNTIME_CLASS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Handler",
                "string",
                doc("io.k8s.api.node.v1.RuntimeClass", "handler"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let rc: node::RuntimeClass = decode("RuntimeClass", object)?;
        Ok(vec![
            name(&rc.metadata),
            rc.handler.into(),
            age(&rc.metadata, now),
        ])
    },
};
