//! The legacy core group (`/api/v1`), as kube-apiserver lists it.
//!
//! Upstream counterpart: pkg/registry/core/rest/storage_core.go and the
//! per-resource REST storages (short names, categories, subresources).

use super::{
    ResourceInfo as R, Subresource, CATEGORY_ALL, CREATE, GET_PATCH_UPDATE, SCALE, STATUS,
};
use k8s_openapi::api::core::v1 as core;

/// Namespaces cannot be deleted as a collection: the namespace lifecycle
/// (finalizers, content deletion) works one namespace at a time.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CONNECT: &[&str] = &["create", "get"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource::other("attach", "", "v1", "PodAttachOptions", CONNECT),
    Subresource::other("binding", "", "v1", "Binding", CREATE),
    Subresource::same("ephemeralcontainers", GET_PATCH_UPDATE),
    Subresource::other("eviction", "policy", "v1", "Eviction", CREATE),
    Subresource::other("exec", "", "v1", "PodExecOptions", CONNECT),
    Subresource::same("log", &["get"]),
    Subresource::other("portforward", "", "v1", "PodPortForwardOptions", CONNECT),
    Subresource::other("proxy", "", "v1", "PodProxyOptions", PROXY),
    Subresource::same("resize", GET_PATCH_UPDATE),
    STATUS,
];

pub(super) const V1: &[R] = &[
    R::of::<core::Binding>("binding", "io.k8s.api.core.v1.Binding").verbs(CREATE),
    R::of::<core::ComponentStatus>("componentstatus", "io.k8s.api.core.v1.ComponentStatus")
        .verbs(&["get", "list"])
        .short(&["cs"]),
    R::of::<core::ConfigMap>("configmap", "io.k8s.api.core.v1.ConfigMap").short(&["cm"]),
    R::of::<core::Endpoints>("endpoints", "io.k8s.api.core.v1.Endpoints").short(&["ep"]),
    R::of::<core::Event>("event", "io.k8s.api.core.v1.Event").short(&["ev"]),
    R::of::<core::LimitRange>("limitrange", "io.k8s.api.core.v1.LimitRange").short(&["limits"]),
    R::of::<core::Namespace>("namespace", "io.k8s.api.core.v1.Namespace")
        .verbs(NAMESPACE_VERBS)
        .short(&["ns"])
        .subresources(&[Subresource::same("finalize", &["update"]), STATUS]),
    R::of::<core::Node>("node", "io.k8s.api.core.v1.Node")
        .short(&["no"])
        .subresources(&[
            Subresource::other("proxy", "", "v1", "NodeProxyOptions", PROXY),
            STATUS,
        ]),
    R::of::<core::PersistentVolumeClaim>(
        "persistentvolumeclaim",
        "io.k8s.api.core.v1.PersistentVolumeClaim",
    )
    .short(&["pvc"])
    .subresources(&[STATUS]),
    R::of::<core::PersistentVolume>("persistentvolume", "io.k8s.api.core.v1.PersistentVolume")
        .short(&["pv"])
        .subresources(&[STATUS]),
    R::of::<core::Pod>("pod", "io.k8s.api.core.v1.Pod")
        .short(&["po"])
        .categories(CATEGORY_ALL)
        .subresources(POD_SUBRESOURCES),
    R::of::<core::PodTemplate>("podtemplate", "io.k8s.api.core.v1.PodTemplate"),
    R::of::<core::ReplicationController>(
        "replicationcontroller",
        "io.k8s.api.core.v1.ReplicationController",
    )
    .short(&["rc"])
    .categories(CATEGORY_ALL)
    .subresources(&[SCALE, STATUS]),
    R::of::<core::ResourceQuota>("resourcequota", "io.k8s.api.core.v1.ResourceQuota")
        .short(&["quota"])
        .subresources(&[STATUS]),
    R::of::<core::Secret>("secret", "io.k8s.api.core.v1.Secret"),
    R::of::<core::ServiceAccount>("serviceaccount", "io.k8s.api.core.v1.ServiceAccount")
        .short(&["sa"])
        .subresources(&[Subresource::other(
            "token",
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            CREATE,
        )]),
    R::of::<core::Service>("service", "io.k8s.api.core.v1.Service")
        .short(&["svc"])
        .categories(CATEGORY_ALL)
        .subresources(&[
            Subresource::other("proxy", "", "v1", "ServiceProxyOptions", PROXY),
            STATUS,
        ]),
];
