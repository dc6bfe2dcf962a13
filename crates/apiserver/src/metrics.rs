//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics computed from the
//! kubelets' `/stats/summary`, so `kubectl top node|pod` works without a
//! separate metrics-server; the group is added to discovery.
//!
//! Upstream counterpart: metrics-server (`pkg/api`, `pkg/scraper`): the
//! Summary API scraped per node, CPU as a rate (`usageNanoCores`) and
//! memory as the working set, a short cache (its 15 s resolution here is
//! 5 s) so repeated `kubectl top` calls do not rescrape every kubelet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::StreamExt;
use http::{header, HeaderMap, Response};
use http_body_util::BodyExt;
use rkube_machinery::labels::Selector;
use rkube_machinery::StatusError;
use rkube_registry::ListOptions;
use serde_json::{json, Value};

use crate::proxy::KubeletClient;
use crate::request::Query;
use crate::response::{self, ok};
use crate::ApiServer;

pub const GROUP: &str = "metrics.k8s.io";
const VERSION: &str = "v1beta1";
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Kubelets scraped at once.
const PARALLEL: usize = 32;

/// Recent Summary API documents by node name.
#[derive(Default)]
pub struct SummaryCache {
    by_node: Mutex<HashMap<String, (Instant, Option<Value>)>>,
}

fn resources() -> Value {
    json!([
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ])
}

fn group_entry() -> Value {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

fn aggregated_entry() -> Value {
    let res = |name: &str, kind: &str, scope: &str| {
        json!({"resource": name, "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
               "scope": scope, "singularResource": "", "verbs": ["get", "list"]})
    };
    json!({"metadata": {"name": GROUP, "creationTimestamp": null},
           "versions": [{"version": VERSION, "freshness": "Current",
                         "resources": [res("nodes", "NodeMetrics", "Cluster"),
                                       res("pods", "PodMetrics", "Namespaced")]}]})
}

/// `/apis`: the built-in groups' discovery plus metrics.k8s.io, in
/// either the legacy or the aggregated form.
pub async fn apis(headers: &HeaderMap) -> Response<Body> {
    let resp = crate::openapi::discovery(headers, false, || {
        let mut doc = crate::discovery::api_group_list();
        if let Some(groups) = doc["groups"].as_array_mut() {
            groups.push(group_entry());
        }
        doc
    });
    let aggregated = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.contains("as=APIGroupDiscoveryList") && ct.starts_with("application/json")
        });
    if !aggregated {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return response::error(StatusError::internal_error("discovery document"));
    };
    let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(items) = doc["items"].as_array_mut() {
        items.push(aggregated_entry());
    }
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(doc.to_string()))
}

/// Serves `/apis/metrics.k8s.io/...`; `None` for other paths.
pub async fn handle(
    server: &Arc<ApiServer>,
    path: &str,
    query: &Query,
    method: &http::Method,
) -> Option<Response<Body>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["apis", GROUP] => {
            let mut doc = group_entry();
            doc["kind"] = "APIGroup".into();
            doc["apiVersion"] = "v1".into();
            return Some(ok(&doc));
        }
        ["apis", GROUP, VERSION] => {
            return Some(ok(&json!({"kind": "APIResourceList", "apiVersion": "v1",
                                    "groupVersion": format!("{GROUP}/{VERSION}"),
                                    "resources": resources()})));
        }
        ["apis", GROUP, VERSION, rest @ ..] => rest.to_vec(),
        ["apis", GROUP, ..] => return Some(response::error(response::no_such_resource())),
        _ => return None,
    };
    if method != http::Method::GET {
        return Some(response::error(StatusError::method_not_supported(
            &rkube_machinery::GroupResource::new(GROUP, rest.first().copied().unwrap_or("")),
            method.as_str(),
        )));
    }
    let result = match rest.as_slice() {
        ["nodes"] => node_metrics(server, None, query).await,
        ["nodes", name] => node_metrics(server, Some(name), query).await,
        ["pods"] => pod_metrics(server, None, None, query).await,
        ["namespaces", ns, "pods"] => pod_metrics(server, Some(ns), None, query).await,
        ["namespaces", ns, "pods", name] => pod_metrics(server, Some(ns), Some(name), query).await,
        _ => Err(response::no_such_resource()),
    };
    Some(match result {
        Ok(v) => ok(&v),
        Err(e) => response::error(e),
    })
}

fn selector(query: &Query) -> Result<Selector, StatusError> {
    match query.get("labelSelector") {
        Some(s) => Selector::parse(s)
            .map_err(|e| StatusError::bad_request(format!("unable to parse requirement: {e}"))),
        None => Ok(Selector::everything()),
    }
}

async fn list(
    server: &ApiServer,
    resource: &str,
    ns: Option<&str>,
) -> Result<Vec<Value>, StatusError> {
    let rs = server
        .resource("", "v1", resource)
        .expect("the catalog serves nodes and pods");
    Ok(rs.list(ns, &ListOptions::default()).await?.items)
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn cpu(nanocores: u64) -> String {
    format!("{nanocores}n")
}

fn memory(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

/// The Summary of every node in `nodes`, scraped in parallel (cached).
async fn summaries(server: &ApiServer, nodes: &[Value]) -> HashMap<String, Value> {
    let Some(client) = server.kubelet.clone() else {
        return HashMap::new();
    };
    let jobs: Vec<(String, (IpAddr, u16))> = nodes
        .iter()
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?.to_string();
            let addr = crate::proxy::kubelet_address(n, &name).ok()?;
            Some((name, addr))
        })
        .collect();
    let fetches = jobs
        .into_iter()
        .map(|(name, (ip, port))| fetch(client.clone(), &server.summaries, name, ip, port));
    let results: Vec<(String, Option<Value>)> = futures::stream::iter(fetches)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results
        .into_iter()
        .filter_map(|(name, doc)| doc.map(|d| (name, d)))
        .collect()
}

async fn fetch(
    client: Arc<KubeletClient>,
    cache: &SummaryCache,
    name: String,
    ip: IpAddr,
    port: u16,
) -> (String, Option<Value>) {
    if let Some((at, doc)) = cache.get(&name) {
        if at.elapsed() < CACHE_FOR {
            return (name, doc);
        }
    }
    let doc = scrape(&client, ip, port).await;
    cache.put(&name, doc.clone());
    (name, doc)
}

impl SummaryCache {
    fn get(&self, node: &str) -> Option<(Instant, Option<Value>)> {
        self.by_node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
    }

    fn put(&self, node: &str, doc: Option<Value>) {
        self.by_node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string(), (Instant::now(), doc));
    }
}

async fn scrape(client: &KubeletClient, ip: IpAddr, port: u16) -> Option<Value> {
    let get = client.get(ip, port, "/stats/summary?only_cpu_and_memory=true");
    match tokio::time::timeout(SCRAPE_TIMEOUT, get).await {
        Ok(Ok(bytes)) => serde_json::from_slice(&bytes).ok(),
        Ok(Err(err)) => {
            tracing::debug!(%ip, %err, "kubelet summary scrape failed");
            None
        }
        Err(_) => None,
    }
}

fn usage(stats: &Value) -> Value {
    json!({
        "cpu": cpu(stats.pointer("/cpu/usageNanoCores").and_then(Value::as_u64).unwrap_or(0)),
        "memory": memory(stats.pointer("/memory/workingSetBytes").and_then(Value::as_u64).unwrap_or(0)),
    })
}

async fn node_metrics(
    server: &ApiServer,
    name: Option<&str>,
    query: &Query,
) -> Result<Value, StatusError> {
    let sel = selector(query)?;
    let nodes: Vec<Value> = match name {
        Some(n) => {
            let rs = server
                .resource("", "v1", "nodes")
                .expect("the catalog serves nodes");
            vec![rs.get(None, n, None).await?]
        }
        None => list(server, "nodes", None)
            .await?
            .into_iter()
            .filter(|n| sel.matches_object(n))
            .collect(),
    };
    let docs = summaries(server, &nodes).await;
    let ts = now();
    let items: Vec<Value> = nodes
        .iter()
        .filter_map(|n| {
            let node_name = n.pointer("/metadata/name")?.as_str()?;
            let doc = docs.get(node_name)?;
            Some(json!({
                "metadata": {"name": node_name, "creationTimestamp": ts,
                             "labels": n.pointer("/metadata/labels").cloned().unwrap_or(json!({}))},
                "timestamp": ts,
                "window": "10s",
                "usage": usage(&doc["node"]),
            }))
        })
        .collect();
    if let Some(n) = name {
        let mut item = items.into_iter().next().ok_or_else(|| {
            StatusError::not_found(&rkube_machinery::GroupResource::new(GROUP, "nodes"), n)
        })?;
        item["kind"] = "NodeMetrics".into();
        item["apiVersion"] = format!("{GROUP}/{VERSION}").into();
        return Ok(item);
    }
    Ok(
        json!({"kind": "NodeMetricsList", "apiVersion": format!("{GROUP}/{VERSION}"),
              "metadata": {}, "items": items}),
    )
}

async fn pod_metrics(
    server: &ApiServer,
    ns: Option<&str>,
    name: Option<&str>,
    query: &Query,
) -> Result<Value, StatusError> {
    let sel = selector(query)?;
    let pods: Vec<Value> = match (ns, name) {
        (Some(ns), Some(n)) => {
            let rs = server
                .resource("", "v1", "pods")
                .expect("the catalog serves pods");
            vec![rs.get(Some(ns), n, None).await?]
        }
        _ => list(server, "pods", ns)
            .await?
            .into_iter()
            .filter(|p| sel.matches_object(p))
            .collect(),
    };
    // Only the nodes these pods run on are scraped.
    let node_names: std::collections::HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.pointer("/spec/nodeName")?.as_str())
        .collect();
    let nodes: Vec<Value> = if node_names.is_empty() {
        Vec::new()
    } else {
        list(server, "nodes", None)
            .await?
            .into_iter()
            .filter(|n| {
                n.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_some_and(|x| node_names.contains(x))
            })
            .collect()
    };
    let docs = summaries(server, &nodes).await;
    let mut by_pod: HashMap<(String, String), &Value> = HashMap::new();
    for doc in docs.values() {
        for p in doc["pods"].as_array().into_iter().flatten() {
            let key = (
                p.pointer("/podRef/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                p.pointer("/podRef/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
            by_pod.insert(key, p);
        }
    }
    let ts = now();
    let items: Vec<Value> = pods
        .iter()
        .filter_map(|p| {
            let pns = p.pointer("/metadata/namespace")?.as_str()?;
            let pname = p.pointer("/metadata/name")?.as_str()?;
            let stats = by_pod.get(&(pns.to_string(), pname.to_string()))?;
            let containers: Vec<Value> = stats["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "usage": usage(c)}))
                .collect();
            Some(json!({
                "metadata": {"name": pname, "namespace": pns, "creationTimestamp": ts,
                             "labels": p.pointer("/metadata/labels").cloned().unwrap_or(json!({}))},
                "timestamp": ts,
                "window": "10s",
                "containers": containers,
            }))
        })
        .collect();
    if let Some(n) = name {
        let mut item = items.into_iter().next().ok_or_else(|| {
            StatusError::not_found(&rkube_machinery::GroupResource::new(GROUP, "pods"), n)
        })?;
        item["kind"] = "PodMetrics".into();
        item["apiVersion"] = format!("{GROUP}/{VERSION}").into();
        return Ok(item);
    }
    Ok(
        json!({"kind": "PodMetricsList", "apiVersion": format!("{GROUP}/{VERSION}"),
              "metadata": {}, "items": items}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_usage() {
        let stats =
            json!({"cpu": {"usageNanoCores": 1500000}, "memory": {"workingSetBytes": 4096 * 1024}});
        assert_eq!(
            usage(&stats),
            json!({"cpu": "1500000n", "memory": "4096Ki"})
        );
        assert_eq!(usage(&json!({})), json!({"cpu": "0n", "memory": "0Ki"}));
    }

    #[test]
    fn discovery_entries_name_both_kinds() {
        assert_eq!(
            group_entry()["preferredVersion"]["groupVersion"],
            "metrics.k8s.io/v1beta1"
        );
        let agg = aggregated_entry();
        assert_eq!(
            agg["versions"][0]["resources"][1]["responseKind"]["kind"],
            "PodMetrics"
        );
    }
}
