//! What a request asks for, read off its path, method and query.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/endpoints/request`
//! (`RequestInfoFactory`). Paths look like
//! `/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}` and
//! `/apis/{group}/{version}/...`; the legacy `/watch/` segment after the
//! version also means a watch.

use std::collections::HashMap;

/// A resource request parsed from a URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
}

/// The path of a request, if it names a resource; `None` for everything
/// else (discovery, health, openapi).
pub fn parse(method: &http::Method, path: &str, query: &Query) -> Option<RequestInfo> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), *version, rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), *version, rest),
        _ => return None,
    };
    let mut rest: Vec<&str> = rest.to_vec();
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest.remove(0);
    }
    let mut info = RequestInfo {
        group,
        version: version.to_string(),
        ..Default::default()
    };
    // namespaces/{ns}/{resource}... but not the namespaces resource itself
    // (`/api/v1/namespaces/{name}/status` names a namespace).
    let rest: &[&str] = match rest.as_slice() {
        ["namespaces", ns, resource, tail @ ..]
            if !(info.group.is_empty() && is_ns_subresource(resource, tail)) =>
        {
            info.namespace = Some(ns.to_string());
            info.resource = resource.to_string();
            tail
        }
        [resource, tail @ ..] if !resource.is_empty() => {
            info.resource = resource.to_string();
            tail
        }
        _ => return None,
    };
    match rest {
        [] => {}
        [name] => info.name = Some(name.to_string()),
        [name, sub, ..] => {
            info.name = Some(name.to_string());
            info.subresource = Some(sub.to_string());
        }
    }
    let is_watch = watch_path || query.flag("watch");
    info.verb = match (method.as_str(), info.name.is_some()) {
        ("GET" | "HEAD", _) if is_watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    };
    Some(info)
}

/// `/api/v1/namespaces/{name}/{status|finalize}` addresses a namespace's
/// subresource, not a resource inside it.
fn is_ns_subresource(segment: &str, tail: &[&str]) -> bool {
    tail.is_empty() && matches!(segment, "status" | "finalize")
}

/// Query parameters, last value wins (as Go's `url.Values.Get` reads the
/// first; kubectl never repeats them).
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned();
        let mut map = HashMap::new();
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter: present as `true` or `1`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn info(method: Method, path: &str, query: &str) -> RequestInfo {
        parse(&method, path, &Query::parse(Some(query))).expect("resource request")
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods/web-0/log", "");
        assert_eq!(
            (
                i.group.as_str(),
                i.namespace.as_deref(),
                i.resource.as_str(),
                i.name.as_deref(),
                i.subresource.as_deref(),
                i.verb
            ),
            (
                "",
                Some("default"),
                "pods",
                Some("web-0"),
                Some("log"),
                "get"
            )
        );
        let i = info(Method::GET, "/apis/apps/v1/deployments", "");
        assert_eq!(
            (i.group.as_str(), i.namespace, i.verb),
            ("apps", None, "list")
        );
        let i = info(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_deref(), i.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let i = info(Method::PUT, "/api/v1/namespaces/ns1/finalize", "");
        assert_eq!(
            (
                i.resource.as_str(),
                i.name.as_deref(),
                i.subresource.as_deref()
            ),
            ("namespaces", Some("ns1"), Some("finalize"))
        );
    }

    #[test]
    fn verbs() {
        assert_eq!(
            info(Method::GET, "/api/v1/pods", "watch=true").verb,
            "watch"
        );
        assert_eq!(
            info(Method::GET, "/api/v1/watch/namespaces/a/pods", "").verb,
            "watch"
        );
        assert_eq!(
            info(Method::DELETE, "/api/v1/namespaces/a/pods", "").verb,
            "deletecollection"
        );
        assert_eq!(
            info(Method::DELETE, "/api/v1/namespaces/a/pods/x", "").verb,
            "delete"
        );
        assert_eq!(
            info(Method::PATCH, "/api/v1/namespaces/a/pods/x", "").verb,
            "patch"
        );
        assert_eq!(
            info(Method::POST, "/api/v1/namespaces/a/pods", "").verb,
            "create"
        );
    }

    #[test]
    fn non_resource_paths() {
        let q = Query::default();
        assert!(parse(&Method::GET, "/healthz", &q).is_none());
        assert!(parse(&Method::GET, "/apis", &q).is_none());
        assert!(parse(&Method::GET, "/api", &q).is_none());
    }
}
