//! The REST operations of each served group/version, as both OpenAPI
//! documents describe them.
//!
//! Upstream counterpart: the routes kube-apiserver's endpoint installer
//! (k8s.io/apiserver/pkg/endpoints/installer.go) registers for each storage,
//! and the operation ids it gives them (`readCoreV1NamespacedPod`,
//! `deleteAppsV1CollectionNamespacedDeployment`, ...). The verbs of each
//! resource come from the catalog, so a path appears exactly when the server
//! routes it.

use crate::params::{self, Param};
use crate::schema::{self, META};
use rkube_api::catalog::{GroupVersion, ResourceInfo, Subresource};

/// What an operation's successful response carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// An object of this definition.
    Object(String),
    /// Plain text (logs, exec/attach/proxy streams).
    Text,
}

/// What an operation's request body carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    Object(String),
    /// `meta/v1 Patch`, in any of the patch content types.
    Patch,
}

#[derive(Debug)]
pub(crate) struct Operation {
    /// Lower-case HTTP method, as the documents key operations.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    /// `x-kubernetes-action`: get, list, post, put, patch, delete,
    /// deletecollection, watch, watchlist, connect.
    pub action: &'static str,
    /// `x-kubernetes-group-version-kind` of the object the operation serves.
    pub gvk: (&'static str, &'static str, &'static str),
    pub query: Vec<&'static Param>,
    pub body: Option<Body>,
    pub reply: Reply,
    /// Success status codes.
    pub codes: &'static [&'static str],
    pub tag: String,
}

impl Operation {
    pub(crate) fn is_watch(&self) -> bool {
        self.action.starts_with("watch")
    }
}

#[derive(Debug)]
pub(crate) struct PathItem {
    pub path: String,
    /// Path-level parameters: `name`, `namespace`, `pretty`.
    pub parameters: Vec<&'static Param>,
    pub operations: Vec<Operation>,
}

/// `Core` + `V1`, `Apps` + `V1`, `RbacAuthorization` + `V1`: the group and
/// version part of every operation id.
pub(crate) fn id_infix(group: &str, version: &str) -> String {
    let group_part: String = if group.is_empty() {
        "Core".into()
    } else {
        group
            .trim_end_matches(".k8s.io")
            .split('.')
            .map(capitalize)
            .collect()
    };
    format!("{group_part}{}", capitalize(version))
}

/// The operation tag: `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let infix = id_infix(group, version);
    let group_part = &infix[..infix.len() - version.len()];
    let mut chars = group_part.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase());
    format!(
        "{}{}_{version}",
        first.into_iter().collect::<String>(),
        chars.as_str()
    )
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The URL prefix of a group/version: `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn base_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Every path of one group/version, in catalog order.
pub(crate) fn paths(gv: &GroupVersion) -> Vec<PathItem> {
    let mut out = Vec::new();
    for resource in gv.resources {
        resource_paths(resource, &mut out);
    }
    out
}

struct Names {
    infix: String,
    tag: String,
    /// `Namespaced` for namespaced resources, empty otherwise.
    scope: &'static str,
    collection: String,
    item: String,
    object: String,
}

fn names(resource: &ResourceInfo) -> Names {
    let base = base_path(resource.group, resource.version);
    let collection = if resource.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", resource.plural)
    } else {
        format!("{base}/{}", resource.plural)
    };
    Names {
        infix: id_infix(resource.group, resource.version),
        tag: tag(resource.group, resource.version),
        scope: if resource.namespaced {
            "Namespaced"
        } else {
            ""
        },
        item: format!("{collection}/{{name}}"),
        collection,
        object: resource.type_name.to_owned(),
    }
}

fn scope_params(resource: &ResourceInfo, item: bool) -> Vec<&'static Param> {
    let mut out = Vec::new();
    if item {
        out.push(&params::NAME);
    }
    if resource.namespaced {
        out.push(&params::NAMESPACE);
    }
    out.push(&params::PRETTY);
    out
}

fn resource_paths(resource: &'static ResourceInfo, out: &mut Vec<PathItem>) {
    let n = names(resource);
    let kind = resource.kind;
    let gvk = (resource.group, resource.version, kind);
    let op = |method, verb: &str, suffix: &str, action, description: String| Operation {
        method,
        id: format!("{verb}{}{suffix}", n.infix),
        description,
        action,
        gvk,
        query: Vec::new(),
        body: None,
        reply: Reply::Object(n.object.clone()),
        codes: &["200"],
        tag: n.tag.clone(),
    };
    let scoped = format!("{}{kind}", n.scope);
    let status = || Reply::Object(format!("{META}.Status"));
    let list_reply = || Reply::Object(schema::list_type_name(resource));
    let watch_reply = || Reply::Object(format!("{META}.WatchEvent"));

    let mut collection = Vec::new();
    if resource.has_verb("list") {
        let mut list = op(
            "get",
            "list",
            &scoped,
            "list",
            format!("list or watch objects of kind {kind}"),
        );
        list.query = params::LIST.to_vec();
        list.reply = list_reply();
        collection.push(list);
    }
    if resource.has_verb("create") {
        let mut create = op(
            "post",
            "create",
            &scoped,
            "post",
            format!("create a {kind}"),
        );
        create.query = params::WRITE.to_vec();
        create.body = Some(Body::Object(n.object.clone()));
        create.codes = &["200", "201", "202"];
        collection.push(create);
    }
    if resource.has_verb("deletecollection") {
        let mut delete = op(
            "delete",
            "delete",
            &format!("Collection{scoped}"),
            "deletecollection",
            format!("delete a collection of {kind}"),
        );
        delete.query = params::DELETE_COLLECTION.to_vec();
        delete.body = Some(Body::Object(format!("{META}.DeleteOptions")));
        delete.reply = status();
        collection.push(delete);
    }
    push(
        out,
        &n.collection,
        scope_params(resource, false),
        collection,
    );

    let mut item = Vec::new();
    if resource.has_verb("get") {
        item.push(op(
            "get",
            "read",
            &scoped,
            "get",
            format!("read the specified {kind}"),
        ));
    }
    if resource.has_verb("update") {
        let mut replace = op(
            "put",
            "replace",
            &scoped,
            "put",
            format!("replace the specified {kind}"),
        );
        replace.query = params::WRITE.to_vec();
        replace.body = Some(Body::Object(n.object.clone()));
        replace.codes = &["200", "201"];
        item.push(replace);
    }
    if resource.has_verb("patch") {
        let mut patch = op(
            "patch",
            "patch",
            &scoped,
            "patch",
            format!("partially update the specified {kind}"),
        );
        patch.query = params::PATCH.to_vec();
        patch.body = Some(Body::Patch);
        patch.codes = &["200", "201"];
        item.push(patch);
    }
    if resource.has_verb("delete") {
        let mut delete = op(
            "delete",
            "delete",
            &scoped,
            "delete",
            format!("delete a {kind}"),
        );
        delete.query = params::DELETE.to_vec();
        delete.body = Some(Body::Object(format!("{META}.DeleteOptions")));
        delete.reply = status();
        delete.codes = &["200", "202"];
        item.push(delete);
    }
    push(out, &n.item, scope_params(resource, true), item);

    if resource.has_verb("watch") {
        let base = base_path(resource.group, resource.version);
        let watch_collection = n.collection.replacen(&base, &format!("{base}/watch"), 1);
        let mut watch = op(
            "get",
            "watch",
            &scoped,
            "watch",
            format!("watch changes to an object of kind {kind}"),
        );
        watch.query = params::LIST.to_vec();
        watch.reply = watch_reply();
        push(
            out,
            &format!("{watch_collection}/{{name}}"),
            scope_params(resource, true),
            vec![watch],
        );
        let mut watch_list = op(
            "get",
            "watch",
            &format!("{scoped}List"),
            "watchlist",
            format!("watch individual changes to a list of {kind}"),
        );
        watch_list.query = params::LIST.to_vec();
        watch_list.reply = watch_reply();
        push(
            out,
            &watch_collection,
            scope_params(resource, false),
            vec![watch_list],
        );
        if resource.namespaced {
            let mut all = op(
                "get",
                "watch",
                &format!("{kind}ListForAllNamespaces"),
                "watchlist",
                format!("watch individual changes to a list of {kind}"),
            );
            all.query = params::LIST.to_vec();
            all.reply = watch_reply();
            push(
                out,
                &format!("{base}/watch/{}", resource.plural),
                vec![&params::PRETTY],
                vec![all],
            );
        }
    }
    if resource.namespaced && resource.has_verb("list") {
        let mut all = op(
            "get",
            "list",
            &format!("{kind}ForAllNamespaces"),
            "list",
            format!("list or watch objects of kind {kind}"),
        );
        all.query = params::LIST.to_vec();
        all.reply = list_reply();
        let base = base_path(resource.group, resource.version);
        push(
            out,
            &format!("{base}/{}", resource.plural),
            vec![&params::PRETTY],
            vec![all],
        );
    }

    for sub in resource.subresources {
        let ops = subresource_operations(resource, sub, &n, &scoped);
        push(
            out,
            &format!("{}/{}", n.item, sub.name),
            scope_params(resource, true),
            ops,
        );
    }
}

fn push(
    out: &mut Vec<PathItem>,
    path: &str,
    parameters: Vec<&'static Param>,
    operations: Vec<Operation>,
) {
    if !operations.is_empty() {
        out.push(PathItem {
            path: path.to_owned(),
            parameters,
            operations,
        });
    }
}

/// Connect-style subresources (exec, attach, portforward, proxy) take an
/// `*Options` kind and stream; upstream names their operations
/// `connect<GV><Method>...`.
fn is_connect(sub: &Subresource) -> bool {
    sub.kind.is_some_and(|k| k.ends_with("Options"))
}

fn subresource_operations(
    resource: &'static ResourceInfo,
    sub: &'static Subresource,
    n: &Names,
    scoped: &str,
) -> Vec<Operation> {
    let (group, version, kind) = sub.response_kind(resource);
    let object = schema::type_name(group, version, kind);
    let suffix = capitalize(sub.name);
    let parent = resource.kind;
    let base = |method, id: String, action, description: String| Operation {
        method,
        id,
        description,
        action,
        gvk: (group, version, kind),
        query: Vec::new(),
        body: None,
        reply: Reply::Object(object.clone()),
        codes: &["200"],
        tag: n.tag.clone(),
    };
    let mut ops = Vec::new();
    if is_connect(sub) {
        for verb in sub.verbs {
            let (method, http) = match *verb {
                "get" => ("get", "Get"),
                "create" => ("post", "Post"),
                "update" => ("put", "Put"),
                "patch" => ("patch", "Patch"),
                "delete" => ("delete", "Delete"),
                _ => continue,
            };
            let id = format!("connect{}{http}{scoped}{suffix}", n.infix);
            let description = format!(
                "connect {} requests to {} of {parent}",
                http.to_uppercase(),
                sub.name
            );
            let mut op = base(method, id, "connect", description);
            op.reply = Reply::Text;
            ops.push(op);
        }
        return ops;
    }
    for verb in sub.verbs {
        let op = match *verb {
            "get" => {
                let mut op = base(
                    "get",
                    format!("read{}{scoped}{suffix}", n.infix),
                    "get",
                    format!("read {} of the specified {parent}", sub.name),
                );
                if sub.name == "log" {
                    op.reply = Reply::Text;
                }
                op
            }
            "update" => {
                let mut op = base(
                    "put",
                    format!("replace{}{scoped}{suffix}", n.infix),
                    "put",
                    format!("replace {} of the specified {parent}", sub.name),
                );
                op.query = params::WRITE.to_vec();
                op.body = Some(Body::Object(object.clone()));
                op.codes = &["200", "201"];
                op
            }
            "patch" => {
                let mut op = base(
                    "patch",
                    format!("patch{}{scoped}{suffix}", n.infix),
                    "patch",
                    format!("partially update {} of the specified {parent}", sub.name),
                );
                op.query = params::PATCH.to_vec();
                op.body = Some(Body::Patch);
                op.codes = &["200", "201"];
                op
            }
            "create" => {
                let mut op = base(
                    "post",
                    format!("create{}{scoped}{suffix}", n.infix),
                    "post",
                    format!("create {} of a {parent}", sub.name),
                );
                op.query = params::WRITE.to_vec();
                op.body = Some(Body::Object(object.clone()));
                op.codes = &["200", "201", "202"];
                op
            }
            _ => continue,
        };
        ops.push(op);
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::catalog;

    fn ids(group: &str, version: &str) -> Vec<(String, String, &'static str)> {
        paths(catalog::group_version(group, version).unwrap())
            .into_iter()
            .flat_map(|p| {
                let path = p.path.clone();
                p.operations
                    .into_iter()
                    .map(move |o| (path.clone(), o.id, o.method))
            })
            .collect()
    }

    fn has(ops: &[(String, String, &str)], path: &str, id: &str, method: &str) -> bool {
        ops.iter()
            .any(|(p, i, m)| p == path && i == id && *m == method)
    }

    #[test]
    fn pods_have_upstream_operation_ids() {
        let ops = ids("", "v1");
        let item = "/api/v1/namespaces/{namespace}/pods/{name}";
        assert!(has(&ops, item, "readCoreV1NamespacedPod", "get"));
        assert!(has(&ops, item, "replaceCoreV1NamespacedPod", "put"));
        assert!(has(&ops, item, "patchCoreV1NamespacedPod", "patch"));
        assert!(has(&ops, item, "deleteCoreV1NamespacedPod", "delete"));
        let coll = "/api/v1/namespaces/{namespace}/pods";
        assert!(has(&ops, coll, "listCoreV1NamespacedPod", "get"));
        assert!(has(&ops, coll, "createCoreV1NamespacedPod", "post"));
        assert!(has(
            &ops,
            coll,
            "deleteCoreV1CollectionNamespacedPod",
            "delete"
        ));
        assert!(has(
            &ops,
            "/api/v1/pods",
            "listCoreV1PodForAllNamespaces",
            "get"
        ));
        assert!(has(
            &ops,
            "/api/v1/watch/pods",
            "watchCoreV1PodListForAllNamespaces",
            "get"
        ));
        assert!(has(
            &ops,
            "/api/v1/watch/namespaces/{namespace}/pods/{name}",
            "watchCoreV1NamespacedPod",
            "get"
        ));
        assert!(has(
            &ops,
            &format!("{item}/status"),
            "patchCoreV1NamespacedPodStatus",
            "patch"
        ));
        assert!(has(
            &ops,
            &format!("{item}/log"),
            "readCoreV1NamespacedPodLog",
            "get"
        ));
        assert!(has(
            &ops,
            &format!("{item}/exec"),
            "connectCoreV1PostNamespacedPodExec",
            "post"
        ));
        assert!(has(
            &ops,
            &format!("{item}/eviction"),
            "createCoreV1NamespacedPodEviction",
            "post"
        ));
        assert!(has(&ops, "/api/v1/nodes/{name}", "readCoreV1Node", "get"));
        assert!(has(
            &ops,
            "/api/v1/namespaces/{name}/finalize",
            "replaceCoreV1NamespaceFinalize",
            "put"
        ));
        // Namespaces cannot be deleted as a collection.
        assert!(!ops
            .iter()
            .any(|(_, i, _)| i == "deleteCoreV1CollectionNamespace"));
    }

    #[test]
    fn named_groups_and_create_only_resources() {
        let ops = ids("apps", "v1");
        assert!(has(
            &ops,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            "readAppsV1NamespacedDeploymentScale",
            "get"
        ));
        let ops = ids("rbac.authorization.k8s.io", "v1");
        assert!(has(
            &ops,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
            "readRbacAuthorizationV1ClusterRole",
            "get"
        ));
        let ops = ids("authentication.k8s.io", "v1");
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(has(
            &ops,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "createAuthenticationV1TokenReview",
            "post"
        ));
        assert_eq!(
            tag("flowcontrol.apiserver.k8s.io", "v1"),
            "flowcontrolApiserver_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
    }

    #[test]
    fn scale_operations_serve_autoscaling_scale() {
        let gv = catalog::group_version("apps", "v1").unwrap();
        let scale = paths(gv)
            .into_iter()
            .find(|p| p.path.ends_with("deployments/{name}/scale"))
            .unwrap();
        let read = &scale.operations[0];
        assert_eq!(read.gvk, ("autoscaling", "v1", "Scale"));
        assert_eq!(
            read.reply,
            Reply::Object("io.k8s.api.autoscaling.v1.Scale".into())
        );
    }

    #[test]
    fn patch_operations_advertise_field_validation() {
        let gv = catalog::group_version("apps", "v1").unwrap();
        let patch = paths(gv)
            .into_iter()
            .flat_map(|p| p.operations)
            .find(|o| o.id == "patchAppsV1NamespacedDeployment")
            .unwrap();
        assert!(patch.query.iter().any(|p| p.name == "fieldValidation"));
        assert_eq!(patch.gvk, ("apps", "v1", "Deployment"));
    }

    /// Every verb the catalog gives a resource has its operation, on the
    /// path and method the server routes it at.
    #[test]
    fn every_catalog_verb_has_an_operation() {
        for gv in catalog::groups().iter().flat_map(|g| g.versions.iter()) {
            let items = paths(gv);
            let has_op = |path: &str, method: &str| {
                items
                    .iter()
                    .any(|p| p.path == path && p.operations.iter().any(|o| o.method == method))
            };
            for resource in gv.resources {
                let n = names(resource);
                let base = base_path(resource.group, resource.version);
                let watch_item = format!(
                    "{}/{{name}}",
                    n.collection.replacen(&base, &format!("{base}/watch"), 1)
                );
                for verb in resource.verbs {
                    let (path, method) = match *verb {
                        "get" => (n.item.as_str(), "get"),
                        "list" => (n.collection.as_str(), "get"),
                        "create" => (n.collection.as_str(), "post"),
                        "update" => (n.item.as_str(), "put"),
                        "patch" => (n.item.as_str(), "patch"),
                        "delete" => (n.item.as_str(), "delete"),
                        "deletecollection" => (n.collection.as_str(), "delete"),
                        "watch" => (watch_item.as_str(), "get"),
                        other => panic!("unexpected verb {other}"),
                    };
                    assert!(
                        has_op(path, method),
                        "{} {verb}: no {method} {path}",
                        resource.plural
                    );
                }
            }
        }
    }
}
