//! CONNECT admission: `pods/exec`, `pods/attach` and `pods/portforward`
//! are sent to validating webhooks with the options object the request's
//! query describes (PodExecOptions, ...), before the kubelet is dialled.
//!
//! Upstream counterpart: the connect handler's admission step in
//! `k8s.io/apiserver/pkg/endpoints/handlers/rest.go` (`ConnectResource`)
//! and the options types of `pkg/apis/core` (query parameters decoded
//! into PodExecOptions, PodAttachOptions, PodPortForwardOptions).

use rkube_api::catalog::ResourceInfo;
use rkube_machinery::StatusError;
use serde_json::{json, Map, Value};

use super::{current, Call, Operation, Webhooks};

/// The kind of a CONNECT's options object.
fn options_kind(subresource: &str) -> &'static str {
    match subresource {
        "exec" => "PodExecOptions",
        "attach" => "PodAttachOptions",
        "portforward" => "PodPortForwardOptions",
        _ => "PodProxyOptions",
    }
}

impl Webhooks {
    /// CONNECT to a pod's exec, attach or portforward: the validating
    /// webhooks see the options object (PodExecOptions, ...).
    pub async fn admit_connect(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        subresource: &str,
        options: &Value,
    ) -> Result<(), StatusError> {
        if !self.any_validating().await? {
            return Ok(());
        }
        let kind = options_kind(subresource);
        let ctx = current().unwrap_or_default();
        let call = Call {
            info,
            operation: Operation::Connect,
            subresource,
            namespace,
            name,
            user: ctx.user.as_ref(),
            dry_run: false,
            options: Value::Null,
            kind: Some(("", "v1", kind)),
        };
        self.validate(&call, Some(options), None).await
    }
}

/// The options object a CONNECT sends, from the request's query
/// (`?command=sh&command=-c&stdin=true&container=app`).
pub fn connect_options(subresource: &str, raw_query: Option<&str>) -> Value {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let all = |key: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let flag = |key: &str| all(key).first().is_some_and(|v| matches!(*v, "true" | "1"));
    let mut out = Map::new();
    let kind = options_kind(subresource);
    out.insert("kind".into(), kind.into());
    out.insert("apiVersion".into(), "v1".into());
    match subresource {
        "exec" | "attach" => {
            for key in ["stdin", "stdout", "stderr", "tty"] {
                if flag(key) {
                    out.insert(key.into(), true.into());
                }
            }
            if let Some(c) = all("container").first() {
                out.insert("container".into(), (*c).into());
            }
            if subresource == "exec" {
                out.insert("command".into(), json!(all("command")));
            }
        }
        "portforward" => {
            let ports: Vec<u64> = all("ports").iter().filter_map(|p| p.parse().ok()).collect();
            if !ports.is_empty() {
                out.insert("ports".into(), json!(ports));
            }
        }
        _ => {}
    }
    Value::Object(out)
}
