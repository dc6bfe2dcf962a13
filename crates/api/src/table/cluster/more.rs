//! Tables of admission, flow control, CSI, service CIDR and API service kinds.
//!
//! Upstream counterpart: printMutatingWebhook, printValidatingWebhook,
//! printValidatingAdmissionPolicy(Binding), printFlowSchema,
//! printPriorityLevelConfiguration, printCSIDriver, printCSINode,
//! printCSIStorageCapacity, printVolumeAttachment, printServiceCIDR and
//! printIPAddress in pkg/printers/internalversion/printers.go, and
//! kube-aggregator's APIService table convertor.

use super::super::format::label_selector;
use super::super::{age, age_column, column, decode, doc, name, name_column, Printer};
use k8s_openapi::api::{
    admissionregistration::v1 as admission, flowcontrol::v1 as flowcontrol,
    networking::v1 as networking, storage::v1 as storage,
};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use serde_json::Value;

pub(super) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => &MUTATING_WEBHOOKS,
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => &VALIDATING_WEBHOOKS,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => &VALIDATING_POLICY,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => &POLICY_BINDING,
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => &FLOW_SCHEMA,
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => &PRIORITY_LEVEL,
        ("storage.k8s.io", "CSIDriver") => &CSI_DRIVER,
        ("storage.k8s.io", "CSINode") => &CSI_NODE,
        ("storage.k8s.io", "CSIStorageCapacity") => &CSI_STORAGE_CAPACITY,
        ("storage.k8s.io", "VolumeAttachment") => &VOLUME_ATTACHMENT,
        ("networking.k8s.io", "ServiceCIDR") => &SERVICE_CIDR,
        ("networking.k8s.io", "IPAddress") => &IP_ADDRESS,
        ("apiregistration.k8s.io", "APIService") => &API_SERVICE,
        _ => return None,
    })
}

const WEBHOOKS_DOC: &str =
    "Webhooks indicates the number of webhooks registered in this configuration";

static MUTATING_WEBHOOKS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column("Webhooks", "integer", WEBHOOKS_DOC),
            age_column(),
        ]
    },
    row: |object, now| {
        let c: admission::MutatingWebhookConfiguration =
            decode("MutatingWebhookConfiguration", object)?;
        let count = c.webhooks.map_or(0, |w| w.len());
        Ok(vec![name(&c.metadata), count.into(), age(&c.metadata, now)])
    },
};

static VALIDATING_WEBHOOKS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column("Webhooks", "integer", WEBHOOKS_DOC),
            age_column(),
        ]
    },
    row: |object, now| {
        let c: admission::ValidatingWebhookConfiguration =
            decode("ValidatingWebhookConfiguration", object)?;
        let count = c.webhooks.map_or(0, |w| w.len());
        Ok(vec![name(&c.metadata), count.into(), age(&c.metadata, now)])
    },
};

static VALIDATING_POLICY: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Validations",
                "integer",
                "Validations indicates the number of validation rules defined in this configuration",
            ),
            column(
                "ParamKind",
                "string",
                "ParamKind specifies the kind of resources used to parameterize this policy",
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let p: admission::ValidatingAdmissionPolicy = decode("ValidatingAdmissionPolicy", object)?;
        let spec = p.spec.clone().unwrap_or_default();
        let param_kind = spec.param_kind.as_ref().map_or_else(
            || "<unset>".to_owned(),
            |k| {
                format!(
                    "{}/{}",
                    k.api_version.as_deref().unwrap_or_default(),
                    k.kind.as_deref().unwrap_or_default()
                )
            },
        );
        Ok(vec![
            name(&p.metadata),
            spec.validations.map_or(0, |v| v.len()).into(),
            param_kind.into(),
            age(&p.metadata, now),
        ])
    },
};

static POLICY_BINDING: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "PolicyName",
                "string",
                "PolicyName indicates the policy definition which the policy binding binded to",
            ),
            column(
                "ParamRef",
                "string",
                "ParamRef indicates the param resource which sets the configration param",
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let b: admission::ValidatingAdmissionPolicyBinding =
            decode("ValidatingAdmissionPolicyBinding", object)?;
        let spec = b.spec.clone().unwrap_or_default();
        let param = match &spec.param_ref {
            None => "<unset>".to_owned(),
            Some(p) => match (p.name.as_deref().filter(|n| !n.is_empty()), &p.selector) {
                (Some(n), _) => match p.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                    Some(ns) => format!("{ns}/{n}"),
                    // Cluster-scoped or any namespace: upstream cannot tell.
                    None => format!("*/{n}"),
                },
                (None, Some(selector)) => label_selector(Some(selector)),
                (None, None) => "<unset>".to_owned(),
            },
        };
        Ok(vec![
            name(&b.metadata),
            spec.policy_name.unwrap_or_default().into(),
            param.into(),
            age(&b.metadata, now),
        ])
    },
};

static FLOW_SCHEMA: Printer = Printer {
    columns: || {
        let spec = "io.k8s.api.flowcontrol.v1.FlowSchemaSpec";
        vec![
            name_column(),
            column(
                "PriorityLevel",
                "string",
                doc(
                    "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationReference",
                    "name",
                ),
            ),
            column(
                "MatchingPrecedence",
                "string",
                doc(spec, "matchingPrecedence"),
            ),
            column(
                "DistinguisherMethod",
                "string",
                doc(spec, "distinguisherMethod"),
            ),
            age_column(),
            column(
                "MissingPL",
                "string",
                "references a broken or non-existent PriorityLevelConfiguration",
            ),
        ]
    },
    row: |object, now| {
        let fs: flowcontrol::FlowSchema = decode("FlowSchema", object)?;
        let spec = fs.spec.clone().unwrap_or_default();
        let dangling = fs
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_.as_deref() == Some("Dangling")))
            .and_then(|c| c.status.clone())
            .unwrap_or_else(|| "?".to_owned());
        Ok(vec![
            name(&fs.metadata),
            spec.priority_level_configuration.name.into(),
            spec.matching_precedence.unwrap_or(0).into(),
            spec.distinguisher_method
                .map_or_else(|| "<none>".to_owned(), |d| d.type_)
                .into(),
            age(&fs.metadata, now),
            dangling.into(),
        ])
    },
};

static PRIORITY_LEVEL: Printer = Printer {
    columns: || {
        let queuing = "io.k8s.api.flowcontrol.v1.QueuingConfiguration";
        vec![
            name_column(),
            column(
                "Type",
                "string",
                doc(
                    "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationSpec",
                    "type",
                ),
            ),
            column(
                "NominalConcurrencyShares",
                "string",
                doc(
                    "io.k8s.api.flowcontrol.v1.LimitedPriorityLevelConfiguration",
                    "nominalConcurrencyShares",
                ),
            ),
            column("Queues", "string", doc(queuing, "queues")),
            column("HandSize", "string", doc(queuing, "handSize")),
            column(
                "QueueLengthLimit",
                "string",
                doc(queuing, "queueLengthLimit"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let pl: flowcontrol::PriorityLevelConfiguration =
            decode("PriorityLevelConfiguration", object)?;
        let spec = pl.spec.clone().unwrap_or_default();
        let none = || Value::from("<none>");
        let num = |v: Option<i32>| v.map_or_else(none, Value::from);
        let (mut shares, mut queues, mut hand, mut limit) = (none(), none(), none(), none());
        if let Some(limited) = &spec.limited {
            shares = num(limited.nominal_concurrency_shares);
            if let Some(q) = limited
                .limit_response
                .as_ref()
                .and_then(|r| r.queuing.as_ref())
            {
                queues = num(q.queues);
                hand = num(q.hand_size);
                limit = num(q.queue_length_limit);
            }
        }
        Ok(vec![
            name(&pl.metadata),
            spec.type_.into(),
            shares,
            queues,
            hand,
            limit,
            age(&pl.metadata, now),
        ])
    },
};

static CSI_DRIVER: Printer = Printer {
    columns: || {
        let spec = "io.k8s.api.storage.v1.CSIDriverSpec";
        vec![
            name_column(),
            column("AttachRequired", "boolean", doc(spec, "attachRequired")),
            column("PodInfoOnMount", "boolean", doc(spec, "podInfoOnMount")),
            column("StorageCapacity", "boolean", doc(spec, "storageCapacity")),
            column("TokenRequests", "string", doc(spec, "tokenRequests")),
            column(
                "RequiresRepublish",
                "boolean",
                doc(spec, "requiresRepublish"),
            ),
            column("Modes", "string", doc(spec, "volumeLifecycleModes")),
            age_column(),
        ]
    },
    row: |object, now| {
        let d: storage::CSIDriver = decode("CSIDriver", object)?;
        let spec = d.spec;
        let tokens = spec.token_requests.as_ref().map_or_else(
            || "<unset>".to_owned(),
            |t| {
                t.iter()
                    .map(|r| r.audience.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            },
        );
        let modes = spec.volume_lifecycle_modes.unwrap_or_default().join(",");
        Ok(vec![
            name(&d.metadata),
            spec.attach_required.unwrap_or(true).into(),
            spec.pod_info_on_mount.unwrap_or(false).into(),
            spec.storage_capacity.unwrap_or(false).into(),
            tokens.into(),
            spec.requires_republish.unwrap_or(false).into(),
            if modes.is_empty() {
                "<none>".to_owned()
            } else {
                modes
            }
            .into(),
            age(&d.metadata, now),
        ])
    },
};

static CSI_NODE: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Drivers",
                "integer",
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let n: storage::CSINode = decode("CSINode", object)?;
        Ok(vec![
            name(&n.metadata),
            n.spec.drivers.len().into(),
            age(&n.metadata, now),
        ])
    },
};

static CSI_STORAGE_CAPACITY: Printer = Printer {
    columns: || {
        let c = "io.k8s.api.storage.v1.CSIStorageCapacity";
        vec![
            name_column(),
            column("StorageClassName", "string", doc(c, "storageClassName")),
            column("Capacity", "string", doc(c, "capacity")),
        ]
    },
    row: |object, _now| {
        let c: storage::CSIStorageCapacity = decode("CSIStorageCapacity", object)?;
        let capacity = c.capacity.map_or_else(|| "<unset>".to_owned(), |q| q.0);
        Ok(vec![
            name(&c.metadata),
            c.storage_class_name.into(),
            capacity.into(),
        ])
    },
};

static VOLUME_ATTACHMENT: Printer = Printer {
    columns: || {
        let spec = "io.k8s.api.storage.v1.VolumeAttachmentSpec";
        vec![
            name_column(),
            super::super::Column {
                format: "name",
                ..column("Attacher", "string", doc(spec, "attacher"))
            },
            column(
                "PV",
                "string",
                doc(
                    "io.k8s.api.storage.v1.VolumeAttachmentSource",
                    "persistentVolumeName",
                ),
            ),
            column("Node", "string", doc(spec, "nodeName")),
            column(
                "Attached",
                "boolean",
                doc("io.k8s.api.storage.v1.VolumeAttachmentStatus", "attached"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let va: storage::VolumeAttachment = decode("VolumeAttachment", object)?;
        Ok(vec![
            name(&va.metadata),
            va.spec.attacher.clone().into(),
            va.spec
                .source
                .persistent_volume_name
                .clone()
                .unwrap_or_default()
                .into(),
            va.spec.node_name.clone().into(),
            va.status.is_some_and(|s| s.attached).into(),
            age(&va.metadata, now),
        ])
    },
};

static SERVICE_CIDR: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "CIDRs",
                "string",
                doc("io.k8s.api.networking.v1.ServiceCIDRSpec", "cidrs"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let c: networking::ServiceCIDR = decode("ServiceCIDR", object)?;
        let cidrs = c.spec.and_then(|s| s.cidrs).unwrap_or_default().join(",");
        Ok(vec![name(&c.metadata), cidrs.into(), age(&c.metadata, now)])
    },
};

static IP_ADDRESS: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "ParentRef",
                "string",
                doc("io.k8s.api.networking.v1.IPAddressSpec", "parentRef"),
            ),
        ]
    },
    row: |object, _now| {
        let ip: networking::IPAddress = decode("IPAddress", object)?;
        // "services/default/kubernetes": lower-cased resource.group, then
        // namespace and name.
        let parent = ip.spec.map(|s| s.parent_ref).map_or_else(
            || "<none>".to_owned(),
            |p| {
                let mut out = match p.group.as_deref().filter(|g| !g.is_empty()) {
                    Some(g) => format!("{}.{g}", p.resource),
                    None => p.resource.clone(),
                }
                .to_lowercase();
                if let Some(ns) = p.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                    out = format!("{out}/{ns}");
                }
                format!("{out}/{}", p.name)
            },
        );
        Ok(vec![name(&ip.metadata), parent.into()])
    },
};

static API_SERVICE: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Service",
                "string",
                "The reference to the service that hosts this API endpoint.",
            ),
            column("Available", "string", "Whether this service is available."),
            age_column(),
        ]
    },
    row: |object, now| {
        let s: apiregistration::APIService = decode("APIService", object)?;
        let service = s
            .spec
            .as_ref()
            .and_then(|spec| spec.service.as_ref())
            .map_or_else(
                || "Local".to_owned(),
                |svc| {
                    format!(
                        "{}/{}",
                        svc.namespace.as_deref().unwrap_or_default(),
                        svc.name.as_deref().unwrap_or_default()
                    )
                },
            );
        let available = s
            .status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Available"))
            .map_or_else(
                || "Unknown".to_owned(),
                |c| match c.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(reason) if c.status != "True" => format!("{} ({reason})", c.status),
                    _ => c.status.clone(),
                },
            );
        Ok(vec![
            name(&s.metadata),
            service.into(),
            available.into(),
            age(&s.metadata, now),
        ])
    },
};
