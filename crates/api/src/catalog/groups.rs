//! The named API groups (`/apis/...`) and the order discovery lists them in.
//!
//! Upstream counterpart: the per-group `rest/storage_*.go` files under
//! pkg/registry, and the group priorities in
//! pkg/controlplane/apiserver/aggregator.go plus
//! cmd/kube-apiserver/app/aggregator.go (apiregistration 20001, core 18000,
//! apps 17800, events 17750, authentication 17700, authorization 17600,
//! autoscaling 17500, batch 17400, certificates 17300, networking 17200,
//! policy 17100, rbac 17000, storage 16800, admissionregistration and
//! apiextensions 16700, scheduling 16600, coordination 16500, node 16300,
//! discovery 16200, flowcontrol 16100).

use super::{
    core, ApiGroup, GroupVersion, ResourceInfo as R, Subresource, CATEGORY_ALL,
    CATEGORY_API_EXTENSIONS, CREATE, GET_PATCH_UPDATE, SCALE, STATUS,
};
use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
    authorization::v1 as authz, autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2,
    batch::v1 as batch, certificates::v1 as certs, coordination::v1 as coordination,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;

const SCALE_STATUS: &[Subresource] = &[SCALE, STATUS];
const ONLY_STATUS: &[Subresource] = &[STATUS];

const APIREGISTRATION_V1: &[R] = &[R::of::<apiregistration::APIService>(
    "apiservice",
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService",
)
.categories(CATEGORY_API_EXTENSIONS)
.subresources(ONLY_STATUS)];

const APPS_V1: &[R] = &[
    R::of::<apps::ControllerRevision>(
        "controllerrevision",
        "io.k8s.api.apps.v1.ControllerRevision",
    ),
    R::of::<apps::DaemonSet>("daemonset", "io.k8s.api.apps.v1.DaemonSet")
        .short(&["ds"])
        .categories(CATEGORY_ALL)
        .subresources(ONLY_STATUS),
    R::of::<apps::Deployment>("deployment", "io.k8s.api.apps.v1.Deployment")
        .short(&["deploy"])
        .categories(CATEGORY_ALL)
        .subresources(SCALE_STATUS),
    R::of::<apps::ReplicaSet>("replicaset", "io.k8s.api.apps.v1.ReplicaSet")
        .short(&["rs"])
        .categories(CATEGORY_ALL)
        .subresources(SCALE_STATUS),
    R::of::<apps::StatefulSet>("statefulset", "io.k8s.api.apps.v1.StatefulSet")
        .short(&["sts"])
        .categories(CATEGORY_ALL)
        .subresources(SCALE_STATUS),
];

const EVENTS_V1: &[R] =
    &[R::of::<events::Event>("event", "io.k8s.api.events.v1.Event").short(&["ev"])];

const AUTHENTICATION_V1: &[R] = &[
    R::of::<authn::SelfSubjectReview>(
        "selfsubjectreview",
        "io.k8s.api.authentication.v1.SelfSubjectReview",
    )
    .verbs(CREATE),
    R::of::<authn::TokenReview>("tokenreview", "io.k8s.api.authentication.v1.TokenReview")
        .verbs(CREATE),
];

const AUTHORIZATION_V1: &[R] = &[
    R::of::<authz::LocalSubjectAccessReview>(
        "localsubjectaccessreview",
        "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
    )
    .verbs(CREATE),
    R::of::<authz::SelfSubjectAccessReview>(
        "selfsubjectaccessreview",
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
    )
    .verbs(CREATE),
    R::of::<authz::SelfSubjectRulesReview>(
        "selfsubjectrulesreview",
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
    )
    .verbs(CREATE),
    R::of::<authz::SubjectAccessReview>(
        "subjectaccessreview",
        "io.k8s.api.authorization.v1.SubjectAccessReview",
    )
    .verbs(CREATE),
];

const AUTOSCALING_V2: &[R] = &[R::of::<autoscaling2::HorizontalPodAutoscaler>(
    "horizontalpodautoscaler",
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
)
.short(&["hpa"])
.categories(CATEGORY_ALL)
.subresources(ONLY_STATUS)];

const AUTOSCALING_V1: &[R] = &[R::of::<autoscaling1::HorizontalPodAutoscaler>(
    "horizontalpodautoscaler",
    "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",
)
.short(&["hpa"])
.categories(CATEGORY_ALL)
.subresources(ONLY_STATUS)];

const BATCH_V1: &[R] = &[
    R::of::<batch::CronJob>("cronjob", "io.k8s.api.batch.v1.CronJob")
        .short(&["cj"])
        .categories(CATEGORY_ALL)
        .subresources(ONLY_STATUS),
    R::of::<batch::Job>("job", "io.k8s.api.batch.v1.Job")
        .categories(CATEGORY_ALL)
        .subresources(ONLY_STATUS),
];

const CERTIFICATES_V1: &[R] = &[R::of::<certs::CertificateSigningRequest>(
    "certificatesigningrequest",
    "io.k8s.api.certificates.v1.CertificateSigningRequest",
)
.short(&["csr"])
.subresources(&[Subresource::same("approval", GET_PATCH_UPDATE), STATUS])];

const NETWORKING_V1: &[R] = &[
    R::of::<networking::IngressClass>("ingressclass", "io.k8s.api.networking.v1.IngressClass"),
    R::of::<networking::Ingress>("ingress", "io.k8s.api.networking.v1.Ingress")
        .short(&["ing"])
        .subresources(ONLY_STATUS),
    R::of::<networking::IPAddress>("ipaddress", "io.k8s.api.networking.v1.IPAddress")
        .short(&["ip"]),
    R::of::<networking::NetworkPolicy>("networkpolicy", "io.k8s.api.networking.v1.NetworkPolicy")
        .short(&["netpol"]),
    R::of::<networking::ServiceCIDR>("servicecidr", "io.k8s.api.networking.v1.ServiceCIDR")
        .subresources(ONLY_STATUS),
];

const POLICY_V1: &[R] = &[R::of::<policy::PodDisruptionBudget>(
    "poddisruptionbudget",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
)
.short(&["pdb"])
.subresources(ONLY_STATUS)];

const RBAC_V1: &[R] = &[
    R::of::<rbac::ClusterRoleBinding>(
        "clusterrolebinding",
        "io.k8s.api.rbac.v1.ClusterRoleBinding",
    ),
    R::of::<rbac::ClusterRole>("clusterrole", "io.k8s.api.rbac.v1.ClusterRole"),
    R::of::<rbac::RoleBinding>("rolebinding", "io.k8s.api.rbac.v1.RoleBinding"),
    R::of::<rbac::Role>("role", "io.k8s.api.rbac.v1.Role"),
];

const STORAGE_V1: &[R] = &[
    R::of::<storage::CSIDriver>("csidriver", "io.k8s.api.storage.v1.CSIDriver"),
    R::of::<storage::CSINode>("csinode", "io.k8s.api.storage.v1.CSINode"),
    R::of::<storage::CSIStorageCapacity>(
        "csistoragecapacity",
        "io.k8s.api.storage.v1.CSIStorageCapacity",
    ),
    R::of::<storage::StorageClass>("storageclass", "io.k8s.api.storage.v1.StorageClass")
        .short(&["sc"]),
    R::of::<storage::VolumeAttachment>(
        "volumeattachment",
        "io.k8s.api.storage.v1.VolumeAttachment",
    )
    .subresources(ONLY_STATUS),
];

const ADMISSIONREGISTRATION_V1: &[R] = &[
    R::of::<admission::MutatingWebhookConfiguration>(
        "mutatingwebhookconfiguration",
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
    )
    .categories(CATEGORY_API_EXTENSIONS),
    R::of::<admission::ValidatingAdmissionPolicy>(
        "validatingadmissionpolicy",
        "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy",
    )
    .categories(CATEGORY_API_EXTENSIONS)
    .subresources(ONLY_STATUS),
    R::of::<admission::ValidatingAdmissionPolicyBinding>(
        "validatingadmissionpolicybinding",
        "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBinding",
    )
    .categories(CATEGORY_API_EXTENSIONS),
    R::of::<admission::ValidatingWebhookConfiguration>(
        "validatingwebhookconfiguration",
        "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
    )
    .categories(CATEGORY_API_EXTENSIONS),
];

const APIEXTENSIONS_V1: &[R] = &[R::of::<apiextensions::CustomResourceDefinition>(
    "customresourcedefinition",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
)
.short(&["crd", "crds"])
.categories(CATEGORY_API_EXTENSIONS)
.subresources(ONLY_STATUS)];

const SCHEDULING_V1: &[R] = &[R::of::<scheduling::PriorityClass>(
    "priorityclass",
    "io.k8s.api.scheduling.v1.PriorityClass",
)
.short(&["pc"])];

const COORDINATION_V1: &[R] = &[R::of::<coordination::Lease>(
    "lease",
    "io.k8s.api.coordination.v1.Lease",
)];

const NODE_V1: &[R] = &[R::of::<node::RuntimeClass>(
    "runtimeclass",
    "io.k8s.api.node.v1.RuntimeClass",
)];

const DISCOVERY_V1: &[R] = &[R::of::<discovery::EndpointSlice>(
    "endpointslice",
    "io.k8s.api.discovery.v1.EndpointSlice",
)];

const FLOWCONTROL_V1: &[R] = &[
    R::of::<flowcontrol::FlowSchema>("flowschema", "io.k8s.api.flowcontrol.v1.FlowSchema")
        .subresources(ONLY_STATUS),
    R::of::<flowcontrol::PriorityLevelConfiguration>(
        "prioritylevelconfiguration",
        "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration",
    )
    .subresources(ONLY_STATUS),
];

const fn gv(group: &'static str, version: &'static str, resources: &'static [R]) -> GroupVersion {
    GroupVersion {
        group,
        version,
        resources,
    }
}

/// A group served at a single version, `v1`.
macro_rules! v1 {
    ($name:literal, $resources:expr) => {
        ApiGroup {
            name: $name,
            versions: &[gv($name, "v1", $resources)],
        }
    };
}

pub(super) const GROUPS: &[ApiGroup] = &[
    v1!("", core::V1),
    v1!("apiregistration.k8s.io", APIREGISTRATION_V1),
    v1!("apps", APPS_V1),
    v1!("events.k8s.io", EVENTS_V1),
    v1!("authentication.k8s.io", AUTHENTICATION_V1),
    v1!("authorization.k8s.io", AUTHORIZATION_V1),
    ApiGroup {
        name: "autoscaling",
        versions: &[
            gv("autoscaling", "v2", AUTOSCALING_V2),
            gv("autoscaling", "v1", AUTOSCALING_V1),
        ],
    },
    v1!("batch", BATCH_V1),
    v1!("certificates.k8s.io", CERTIFICATES_V1),
    v1!("networking.k8s.io", NETWORKING_V1),
    v1!("policy", POLICY_V1),
    v1!("rbac.authorization.k8s.io", RBAC_V1),
    v1!("storage.k8s.io", STORAGE_V1),
    v1!("admissionregistration.k8s.io", ADMISSIONREGISTRATION_V1),
    v1!("apiextensions.k8s.io", APIEXTENSIONS_V1),
    v1!("scheduling.k8s.io", SCHEDULING_V1),
    v1!("coordination.k8s.io", COORDINATION_V1),
    v1!("node.k8s.io", NODE_V1),
    v1!("discovery.k8s.io", DISCOVERY_V1),
    v1!("flowcontrol.apiserver.k8s.io", FLOWCONTROL_V1),
];
