//! Service defaulting, and what an update keeps or drops of what the
//! old object held.
//!
//! Upstream counterpart: `SetDefaults_Service` in
//! `pkg/apis/core/v1/defaults.go`; `patchAllocatedValues` and
//! `dropTypeDependentFields` in `pkg/registry/core/service/storage`.

use serde_json::{json, Map, Value};

use crate::resources::util::{child, default, default_str, items, items_mut, str_at, str_field};

/// `SetDefaults_Service`.
pub fn default_service(svc: &mut Value) {
    let Some(map) = svc.as_object_mut() else {
        return;
    };
    let spec = child(map, "spec");
    default_str(spec, "type", "ClusterIP");
    default_str(spec, "sessionAffinity", "None");
    match str_field(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                let config = json!({"clientIP": {"timeoutSeconds": 10800}});
                spec.insert("sessionAffinityConfig".into(), config);
            }
        }
        _ => {}
    }
    for p in items_mut(spec, "ports") {
        default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(v) => v.as_i64() == Some(0),
        };
        if unset {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    }
    let ty = str_field(spec, "type").to_string();
    if ty == "NodePort" || ty == "LoadBalancer" {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_str(spec, "internalTrafficPolicy", "Cluster");
    }
    if ty == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", true);
    }
    // clusterIP and clusterIPs name the same primary address.
    let ip = str_field(spec, "clusterIP").to_string();
    let first = spec
        .get("clusterIPs")
        .and_then(|l| l.get(0))
        .and_then(Value::as_str)
        .map(str::to_string);
    match (ip.is_empty(), first) {
        (false, None) => {
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        (true, Some(first)) => {
            spec.insert("clusterIP".into(), first.into());
        }
        _ => {}
    }
}

/// On update, a body that leaves out what was allocated keeps it (as
/// upstream's `patchAllocatedValues`), and a type change drops what the
/// new type cannot have.
pub fn carry_allocations(new: &mut Value, old: &Value) {
    let new_type = str_at(new, "/spec/type").to_string();
    let old_type = str_at(old, "/spec/type");
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    // What the client left as it was belongs to the old type; what it
    // changed it meant (and validation judges). Upstream:
    // `dropTypeDependentFields`.
    let unchanged = |spec: &Map<String, Value>, f: &str| {
        spec.get(f).is_some() && spec.get(f) == old.pointer(&format!("/spec/{f}"))
    };
    let drop_unchanged = |spec: &mut Map<String, Value>, fields: &[&str]| {
        for f in fields {
            if unchanged(spec, f) {
                spec.remove(*f);
            }
        }
    };
    if !matches!(new_type.as_str(), "NodePort" | "LoadBalancer") {
        drop_unchanged(spec, &["externalTrafficPolicy", "healthCheckNodePort"]);
    }
    if new_type != "LoadBalancer" {
        drop_unchanged(spec, &["allocateLoadBalancerNodePorts"]);
    }
    if new_type == "ExternalName" {
        drop_unchanged(spec, &["internalTrafficPolicy"]);
        if unchanged(spec, "clusterIP") {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if unchanged(spec, f) {
                spec.remove(f);
            }
        }
    } else if str_field(spec, "clusterIP").is_empty() && old_type != "ExternalName" {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                spec.insert(f.into(), v.clone());
            }
        }
    }
    let keeps_ports = matches!(new_type.as_str(), "NodePort" | "LoadBalancer");
    let old_ports = items(old.get("spec").unwrap_or(&Value::Null), "ports");
    for p in items_mut(spec, "ports") {
        let node_port = p.get("nodePort").and_then(Value::as_u64).unwrap_or(0);
        let same = old_ports.iter().find(|o| {
            o.get("port") == p.get("port")
                && o.get("protocol").and_then(Value::as_str)
                    == p.get("protocol").and_then(Value::as_str)
        });
        if keeps_ports && node_port == 0 {
            if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                p.insert("nodePort".into(), np.clone());
            }
        } else if !keeps_ports
            && same.and_then(|o| o.get("nodePort")).and_then(Value::as_u64) == Some(node_port)
        {
            p.remove("nodePort");
        }
    }
}
