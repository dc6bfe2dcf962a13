//! ResourceQuota admission: what a new object would add to the usage its
//! namespace's quotas track, and whether a quota lets it.
//!
//! Upstream counterpart: `CheckRequest` in
//! `k8s.io/apiserver/pkg/admission/plugin/resourcequota/controller.go` and
//! the evaluators of `pkg/quota/v1/evaluator/core` (pods.go, services.go,
//! persistent_volume_claims.go) plus the generic object-count one. As
//! upstream, a quota counts only once the quota controller has filled in
//! `status.hard`, and the resources it names need a `status.used` entry.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::resources::quantity::{self, Quantity};
use crate::resources::util::{items, str_at};

/// What an object uses: resource name -> quantity and whether it prints
/// binary.
pub type Usage = BTreeMap<String, (Quantity, bool)>;

/// Resources whose use a pod must state per container when a quota limits
/// them (upstream's backward-compatible `validationSet`).
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Core resources whose plain plural is an object-count quota name.
const LEGACY_COUNTS: [&str; 7] = [
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

fn one() -> (Quantity, bool) {
    (Quantity::count(1), false)
}

fn parse(v: &Value) -> Option<(Quantity, bool)> {
    let q = quantity::parse_value(v)?;
    Some((q, v.as_str().is_some_and(quantity::is_binary)))
}

fn add(usage: &mut Usage, name: &str, q: (Quantity, bool)) {
    let e = usage
        .entry(name.to_string())
        .or_insert((Quantity::default(), q.1));
    e.0 = e.0.plus(q.0);
}

/// The name object counts of a resource go by: `count/pods`,
/// `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// A container list's requests (or limits) of each resource.
fn container_amounts(containers: &[Value], field: &str) -> Vec<Usage> {
    containers
        .iter()
        .map(|c| {
            let mut u = Usage::new();
            for (k, v) in c
                .pointer(&format!("/resources/{field}"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(q) = parse(v) {
                    u.insert(k.clone(), q);
                }
            }
            u
        })
        .collect()
}

/// A pod's requests or limits: its containers' sum, or its largest init
/// container where that is more, plus the pod overhead.
fn pod_amounts(pod: &Value, field: &str) -> Usage {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut total = Usage::new();
    for u in container_amounts(items(spec, "containers"), field) {
        for (k, q) in u {
            add(&mut total, &k, q);
        }
    }
    for u in container_amounts(items(spec, "initContainers"), field) {
        for (k, q) in u {
            if total.get(&k).is_none_or(|t| t.0 < q.0) {
                total.insert(k, q);
            }
        }
    }
    for (k, v) in spec
        .get("overhead")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(q) = parse(v) {
            add(&mut total, k, q);
        }
    }
    total
}

fn pod_usage(pod: &Value, usage: &mut Usage) {
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return;
    }
    usage.insert("pods".into(), one());
    for (k, q) in pod_amounts(pod, "requests") {
        match k.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                usage.insert(k.clone(), q);
                usage.insert(format!("requests.{k}"), q);
            }
            // Extended resources are quota'd by their requests only.
            other if other.contains('/') || other.starts_with("hugepages-") => {
                usage.insert(format!("requests.{other}"), q);
            }
            _ => {}
        }
    }
    for (k, q) in pod_amounts(pod, "limits") {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            usage.insert(format!("limits.{k}"), q);
        }
    }
}

fn service_usage(svc: &Value, usage: &mut Usage) {
    let kind = str_at(svc, "/spec/type");
    let ports = items(svc.get("spec").unwrap_or(&Value::Null), "ports").len() as i64;
    let node_ports = match kind {
        "NodePort" => ports,
        "LoadBalancer"
            if svc
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false) =>
        {
            ports
        }
        _ => 0,
    };
    if kind == "LoadBalancer" {
        usage.insert("services.loadbalancers".into(), one());
    }
    if node_ports > 0 {
        usage.insert(
            "services.nodeports".into(),
            (Quantity::count(node_ports), false),
        );
    }
}

fn claim_usage(claim: &Value, usage: &mut Usage) {
    let class = str_at(claim, "/spec/storageClassName");
    if !class.is_empty() {
        usage.insert(
            format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
            one(),
        );
    }
    if let Some(q) = claim
        .pointer("/spec/resources/requests/storage")
        .and_then(parse)
    {
        usage.insert("requests.storage".into(), q);
        if !class.is_empty() {
            usage.insert(
                format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                q,
            );
        }
    }
}

/// What creating `obj` (of `group`/`plural`) adds to its namespace's use.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut usage = Usage::new();
    usage.insert(count_name(group, plural), one());
    if group.is_empty() && LEGACY_COUNTS.contains(&plural) && plural != "pods" {
        usage.insert(plural.to_string(), one());
    }
    match (group, plural) {
        ("", "pods") => pod_usage(obj, &mut usage),
        ("", "services") => service_usage(obj, &mut usage),
        ("", "persistentvolumeclaims") => claim_usage(obj, &mut usage),
        _ => {}
    }
    usage
}

/// What updating `old` to `new` adds to its namespace's use: the growth
/// of each resource, for the kinds whose updates quota charges (a Service
/// turned NodePort or LoadBalancer, a claim resized); empty otherwise.
pub fn update_delta(group: &str, plural: &str, new: &Value, old: &Value) -> Usage {
    if !matches!(
        (group, plural),
        ("", "services") | ("", "persistentvolumeclaims")
    ) {
        return Usage::new();
    }
    let before = usage(group, plural, old);
    usage(group, plural, new)
        .into_iter()
        .filter_map(|(k, (q, binary))| {
            let prev = before.get(&k).map_or(Quantity::default(), |p| p.0);
            (q > prev).then(|| (k, (Quantity::from_nanos(q.nanos() - prev.nanos()), binary)))
        })
        .collect()
}

/// Whether a pod is BestEffort: no container requests or limits anything.
fn best_effort(pod: &Value) -> bool {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    items(spec, "containers")
        .iter()
        .chain(items(spec, "initContainers"))
        .all(|c| {
            ["requests", "limits"].iter().all(|f| {
                c.pointer(&format!("/resources/{f}"))
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.keys().all(|k| k != "cpu" && k != "memory"))
            })
        })
}

/// Whether `pod` is in one scope selector term (upstream
/// `podMatchesScopeFunc`).
fn scope_matches(pod: &Value, scope: &str, operator: &str, values: &[Value]) -> bool {
    let terminating = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0);
    match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "PriorityClass" => {
            let class = str_at(pod, "/spec/priorityClassName");
            let listed = values.iter().any(|v| v.as_str() == Some(class));
            match operator {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => !class.is_empty() && listed,
                "NotIn" => class.is_empty() || !listed,
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => {
            let terms = |kind: &str| {
                let req = pod
                    .pointer(&format!(
                        "/spec/affinity/{kind}/requiredDuringSchedulingIgnoredDuringExecution"
                    ))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let pref: Vec<Value> = pod
                    .pointer(&format!(
                        "/spec/affinity/{kind}/preferredDuringSchedulingIgnoredDuringExecution"
                    ))
                    .and_then(Value::as_array)
                    .map(|ts| {
                        ts.iter()
                            .filter_map(|t| t.get("podAffinityTerm").cloned())
                            .collect()
                    })
                    .unwrap_or_default();
                req.into_iter().chain(pref).any(|t| {
                    t.get("namespaceSelector").is_some_and(|s| !s.is_null())
                        || !items(&t, "namespaces").is_empty()
                })
            };
            terms("podAffinity") || terms("podAntiAffinity")
        }
        _ => false,
    }
}

/// Whether a quota's scopes (and scope selector) select `obj`. Scoped
/// quotas only ever select pods.
fn in_scope(quota: &Value, is_pod: bool, obj: &Value) -> bool {
    let spec = quota.get("spec").unwrap_or(&Value::Null);
    let mut terms: Vec<(String, String, Vec<Value>)> = items(spec, "scopes")
        .iter()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in items(
        spec.get("scopeSelector").unwrap_or(&Value::Null),
        "matchExpressions",
    ) {
        terms.push((
            str_at(e, "/scopeName").to_string(),
            str_at(e, "/operator").to_string(),
            items(e, "values").to_vec(),
        ));
    }
    if terms.is_empty() {
        return true;
    }
    is_pod
        && terms
            .iter()
            .all(|(scope, op, values)| scope_matches(obj, scope, op, values))
}

/// The resources of a quota's `status.hard` an object of this kind can
/// use (upstream `MatchingResources`).
fn matching(hard: &Map<String, Value>, is_pod: bool, usage: &Usage) -> Vec<String> {
    hard.keys()
        .filter(|k| {
            usage.contains_key(*k)
                || (is_pod
                    && (MUST_SPECIFY.contains(&k.as_str())
                        || k.starts_with("requests.")
                        || k.starts_with("limits.")
                        || matches!(k.as_str(), "pods" | "count/pods" | "ephemeral-storage")))
        })
        .cloned()
        .collect()
}

/// Containers that do not state a resource the quota limits (upstream
/// `podEvaluator.Constraints`): `must specify limits.cpu for: a,b; ...`.
fn constraints(pod: &Value, matched: &[String]) -> Option<String> {
    let required: BTreeSet<&str> = matched
        .iter()
        .map(String::as_str)
        .filter(|k| MUST_SPECIFY.contains(k))
        .collect();
    if required.is_empty() {
        return None;
    }
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in items(spec, "containers")
        .iter()
        .chain(items(spec, "initContainers"))
    {
        let has =
            |field: &str, res: &str| c.pointer(&format!("/resources/{field}/{res}")).is_some();
        for r in &required {
            let stated = match *r {
                "cpu" | "requests.cpu" => has("requests", "cpu"),
                "memory" | "requests.memory" => has("requests", "memory"),
                "limits.cpu" => has("limits", "cpu"),
                _ => has("limits", "memory"),
            };
            if !stated {
                missing
                    .entry(r)
                    .or_default()
                    .insert(str_at(c, "/name").to_string());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

fn list_of(v: Option<&Value>) -> Usage {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), parse(q)?)))
        .collect()
}

/// `a=1,b=2Gi` in name order, as upstream's `prettyPrint`.
fn pretty(list: &Usage) -> String {
    list.iter()
        .map(|(k, q)| format!("{k}={}", quantity::format(q.0, q.1)))
        .collect::<Vec<_>>()
        .join(",")
}

/// One quota's verdict on creating `obj`, which uses `usage`: `Ok(None)`
/// when the quota does not count it, `Ok(Some(used))` with the quota's
/// new `status.used`, or `Err` with the reason for a 403.
pub fn charge(
    quota: &Value,
    plural_is_pod: bool,
    obj: &Value,
    usage: &Usage,
) -> Result<Option<Map<String, Value>>, String> {
    let name = str_at(quota, "/metadata/name");
    let empty = Map::new();
    let hard = quota
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let matched = matching(hard, plural_is_pod, usage);
    if matched.is_empty() || !in_scope(quota, plural_is_pod, obj) {
        return Ok(None);
    }
    if plural_is_pod {
        if let Some(msg) = constraints(obj, &matched) {
            return Err(format!("failed quota: {name}: {msg}"));
        }
    }
    let used_json = quota.pointer("/status/used").and_then(Value::as_object);
    let unknown: Vec<&str> = matched
        .iter()
        .filter(|k| used_json.is_none_or(|u| !u.contains_key(*k)))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let mut unknown = unknown;
        unknown.sort();
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            unknown.join(",")
        ));
    }
    let hard = list_of(Some(&Value::Object(hard.clone())));
    let used = list_of(quota.pointer("/status/used"));
    let requested: Usage = usage
        .iter()
        .filter(|(k, q)| hard.contains_key(*k) && !q.0.is_zero())
        .map(|(k, q)| (k.clone(), *q))
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let mut new_used = used.clone();
    let mut exceeded = Vec::new();
    for (k, q) in &requested {
        let cur = used.get(k).copied().unwrap_or((Quantity::default(), q.1));
        let binary = if cur.0.is_zero() {
            hard[k].1 || q.1
        } else {
            cur.1
        };
        let sum = (cur.0.plus(q.0), binary);
        if sum.0 > hard[k].0 {
            exceeded.push(k.clone());
        }
        new_used.insert(k.clone(), sum);
    }
    if !exceeded.is_empty() {
        let mask = |l: &Usage| -> Usage {
            l.iter()
                .filter(|(k, _)| exceeded.contains(k))
                .map(|(k, q)| (k.clone(), *q))
                .collect()
        };
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(&requested)),
            pretty(&mask(&used)),
            pretty(&mask(&hard))
        ));
    }
    // Keep entries the request did not touch exactly as they were.
    let mut out = used_json.cloned().unwrap_or_default();
    for k in requested.keys() {
        let q = new_used[k];
        out.insert(k.clone(), quantity::format(q.0, q.1).into());
    }
    Ok(Some(out))
}
