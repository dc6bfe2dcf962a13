//! Service validation.
//!
//! Upstream counterpart: `ValidateService` / `ValidateServiceUpdate` in
//! `pkg/apis/core/validation/validation.go`.

use std::collections::HashSet;
use std::net::IpAddr;

use rkube_machinery::labels::validation::{is_label_key, is_label_value};
use rkube_machinery::names::{is_dns1035_label, is_dns1123_label, is_dns1123_subdomain};
use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::pod::validation::{
    inclusive_range, is_valid_port_name, validate_port_number,
};
use crate::resources::util::str_at;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];

pub fn validate_service(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = FieldPath::new("spec");
    let name = crate::meta::name(svc);
    // Service names are DNS-1035 labels; the generic check already
    // reported anything that is not even a DNS-1123 label.
    if !name.is_empty() && is_dns1123_label(name).is_empty() {
        for msg in is_dns1035_label(name) {
            errs.push(FieldError::invalid(
                &FieldPath::new("metadata").child("name"),
                name,
                msg,
            ));
        }
    }
    let ty = str_at(svc, "/spec/type");
    if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(&spec.child("type"), ty, TYPES));
    }
    let cluster_ip = str_at(svc, "/spec/clusterIP");
    let headless = cluster_ip == "None";
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if ty == "ExternalName" {
        let ext = str_at(svc, "/spec/externalName");
        let ext_path = spec.child("externalName");
        if ext.is_empty() {
            errs.push(FieldError::required(&ext_path, ""));
        } else {
            for msg in is_dns1123_subdomain(ext.strip_suffix('.').unwrap_or(ext)) {
                errs.push(FieldError::invalid(&ext_path, ext, msg));
            }
        }
        if !cluster_ip.is_empty() {
            errs.push(FieldError::forbidden(
                &spec.child("clusterIP"),
                "may not be set for ExternalName services",
            ));
        }
        for field in ["ipFamilies", "ipFamilyPolicy"] {
            let set = svc
                .pointer(&format!("/spec/{field}"))
                .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
            if set {
                errs.push(FieldError::forbidden(
                    &spec.child(field),
                    "may not be set for ExternalName services",
                ));
            }
        }
    } else if ports.is_empty() && !headless {
        errs.push(FieldError::required(&spec.child("ports"), ""));
    }
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(
            &spec.child("clusterIPs").index(0),
            cluster_ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if headless && (ty == "NodePort" || ty == "LoadBalancer") {
        errs.push(FieldError::invalid(
            &spec.child("clusterIPs").index(0),
            cluster_ip,
            format!("may not be set to 'None' for {ty} services"),
        ));
    }
    validate_ports(ports, ty, &spec.child("ports"), &mut errs);
    if let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) {
        let sel_path = spec.child("selector");
        for (k, v) in sel {
            for msg in is_label_key(k) {
                errs.push(FieldError::invalid(&sel_path, k.as_str(), msg));
            }
            let v = v.as_str().unwrap_or("");
            for msg in is_label_value(v) {
                errs.push(FieldError::invalid(&sel_path, v, msg));
            }
        }
    }
    let affinity = str_at(svc, "/spec/sessionAffinity");
    if !AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported(
            &spec.child("sessionAffinity"),
            affinity,
            AFFINITIES,
        ));
    }
    let etp = str_at(svc, "/spec/externalTrafficPolicy");
    if ty == "NodePort" || ty == "LoadBalancer" {
        if !TRAFFIC_POLICIES.contains(&etp) {
            errs.push(FieldError::not_supported(
                &spec.child("externalTrafficPolicy"),
                etp,
                TRAFFIC_POLICIES,
            ));
        }
    } else if !etp.is_empty() {
        errs.push(FieldError::invalid(
            &spec.child("externalTrafficPolicy"),
            etp,
            "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
        ));
    }
    let itp = str_at(svc, "/spec/internalTrafficPolicy");
    if !itp.is_empty() && !TRAFFIC_POLICIES.contains(&itp) {
        errs.push(FieldError::not_supported(
            &spec.child("internalTrafficPolicy"),
            itp,
            TRAFFIC_POLICIES,
        ));
    }
    errs
}

fn validate_ports(ports: &[Value], ty: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ppath = path.index(i);
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            if ports.len() > 1 {
                errs.push(FieldError::required(&ppath.child("name"), ""));
            }
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(&ppath.child("name"), name, msg));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(&ppath.child("name"), name));
            }
        }
        validate_port_number(p.get("port"), &ppath.child("port"), true, errs);
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("");
        if !PROTOCOLS.contains(&proto) {
            errs.push(FieldError::not_supported(
                &ppath.child("protocol"),
                proto,
                PROTOCOLS,
            ));
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !keys.insert((port, proto.to_string())) {
            errs.push(FieldError::duplicate(&ppath, format!("{{{port} {proto}}}")));
        }
        match p.get("targetPort") {
            Some(Value::String(s)) if !s.is_empty() => {
                for msg in is_valid_port_name(s) {
                    errs.push(FieldError::invalid(
                        &ppath.child("targetPort"),
                        s.as_str(),
                        msg,
                    ));
                }
            }
            Some(v @ Value::Number(_)) => {
                if !(1..=65535).contains(&v.as_i64().unwrap_or(0)) {
                    errs.push(FieldError::invalid(
                        &ppath.child("targetPort"),
                        v,
                        inclusive_range(1, 65535),
                    ));
                }
            }
            _ => errs.push(FieldError::required(&ppath.child("targetPort"), "")),
        }
        let node_port = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            if ty == "ClusterIP" || ty == "ExternalName" {
                errs.push(FieldError::forbidden(
                    &ppath.child("nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else {
                validate_port_number(p.get("nodePort"), &ppath.child("nodePort"), false, errs);
            }
        }
    }
}

/// What an update may not change: the cluster IPs, once set, unless the
/// service turns into or out of an ExternalName (upstream
/// `validateUpgradeDowngradeClusterIPs`, single-stack).
pub fn validate_service_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_service(new);
    let external = |v: &Value| str_at(v, "/spec/type") == "ExternalName";
    let headless = |v: &Value| str_at(v, "/spec/clusterIP") == "None";
    if external(new) || external(old) || (headless(new) && headless(old)) {
        return errs;
    }
    let ips = |v: &Value| -> Vec<Value> {
        v.pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (old_ips, new_ips) = (ips(old), ips(new));
    let path = FieldPath::new("spec").child("clusterIPs").index(0);
    if !old_ips.is_empty() && new_ips.is_empty() {
        errs.push(FieldError::invalid(
            &path,
            Value::from(new_ips),
            "primary clusterIP can not be unset",
        ));
    } else if !old_ips.is_empty() && old_ips.first() != new_ips.first() {
        errs.push(FieldError::invalid(
            &path,
            Value::from(new_ips),
            "may not change once set",
        ));
    }
    errs
}
