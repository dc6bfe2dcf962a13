//! Pod spec validation, shared by pods and the pod templates of workloads.
//!
//! Upstream counterpart: `pkg/apis/core/validation/validation.go`
//! (`ValidatePodSpec`, `validateContainers`, `validateVolumes`,
//! `validateContainerPorts`, `ValidateResourceRequirements`). Messages and
//! the lists of supported values are upstream's, in upstream's order.

use std::collections::HashSet;

use rkube_machinery::names::{is_dns1123_label, max_len_error};
use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::quantity::{self, QUANTITY_ERROR};
use crate::resources::util::items;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];

/// Upstream `InclusiveRangeError`.
pub fn inclusive_range(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Validate a pod spec found at `path`.
pub fn validate_pod_spec(spec: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(spec, &path.child("volumes"), &mut errs);
    let mut names = HashSet::new();
    let containers = items(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&path.child("containers"), ""));
    }
    for key in ["initContainers", "containers"] {
        for (i, c) in items(spec, key).iter().enumerate() {
            let cpath = path.child(key).index(i);
            validate_container(c, &cpath, &volumes, &mut names, &mut errs);
        }
    }
    validate_restart_policy(
        str_of(spec, "restartPolicy"),
        &path.child("restartPolicy"),
        &mut errs,
    );
    match str_of(spec, "dnsPolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(&path.child("dnsPolicy"), "")),
        p if DNS_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(
            &path.child("dnsPolicy"),
            p,
            DNS_POLICIES,
        )),
    }
    if let Some(v) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        let n = v.as_i64().unwrap_or(0);
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                v,
                inclusive_range(1, i64::from(i32::MAX)),
            ));
        }
    }
    errs
}

/// `restartPolicy` of a pod: required, one of the three.
pub fn validate_restart_policy(policy: Option<&str>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match policy.unwrap_or("") {
        "" => errs.push(FieldError::required(path, "")),
        p if RESTART_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(path, p, RESTART_POLICIES)),
    }
}

/// Check the volumes and return their names.
fn validate_volumes(spec: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in items(spec, "volumes").iter().enumerate() {
        let vpath = path.index(i);
        let name = str_of(v, "name").unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&vpath.child("name"), ""));
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(&vpath.child("name"), name, msg));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(&vpath.child("name"), name));
            }
        }
        let sources: Vec<&String> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, x)| *k != "name" && !x.is_null())
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&vpath, "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    errs.push(FieldError::forbidden(
                        &vpath.child(s.as_str()),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
    }
    names
}

fn validate_container(
    c: &Value,
    path: &FieldPath,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let name = str_of(c, "name").unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        for msg in is_dns1123_label(name) {
            errs.push(FieldError::invalid(&path.child("name"), name, msg));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&path.child("name"), name));
        }
    }
    if str_of(c, "image").unwrap_or("").trim().is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    match str_of(c, "imagePullPolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(&path.child("imagePullPolicy"), "")),
        p if PULL_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            p,
            PULL_POLICIES,
        )),
    }
    match str_of(c, "terminationMessagePolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(
            &path.child("terminationMessagePolicy"),
            "",
        )),
        p if TERMINATION_MESSAGE_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            p,
            TERMINATION_MESSAGE_POLICIES,
        )),
    }
    let mut port_names = HashSet::new();
    for (i, p) in items(c, "ports").iter().enumerate() {
        let ppath = path.child("ports").index(i);
        if let Some(name) = str_of(p, "name").filter(|n| !n.is_empty()) {
            for msg in is_valid_port_name(name) {
                errs.push(FieldError::invalid(&ppath.child("name"), name, msg));
            }
            if !port_names.insert(name) {
                errs.push(FieldError::duplicate(&ppath.child("name"), name));
            }
        }
        validate_port_number(
            p.get("containerPort"),
            &ppath.child("containerPort"),
            true,
            errs,
        );
        validate_port_number(p.get("hostPort"), &ppath.child("hostPort"), false, errs);
        match str_of(p, "protocol").unwrap_or("") {
            "" => errs.push(FieldError::required(&ppath.child("protocol"), "")),
            proto if PROTOCOLS.contains(&proto) => {}
            proto => errs.push(FieldError::not_supported(
                &ppath.child("protocol"),
                proto,
                PROTOCOLS,
            )),
        }
    }
    for (i, m) in items(c, "volumeMounts").iter().enumerate() {
        let mpath = path.child("volumeMounts").index(i);
        let vol = str_of(m, "name").unwrap_or("");
        if vol.is_empty() {
            errs.push(FieldError::required(&mpath.child("name"), ""));
        } else if !volumes.contains(vol) {
            errs.push(FieldError::not_found(&mpath.child("name"), vol));
        }
        if str_of(m, "mountPath").unwrap_or("").is_empty() {
            errs.push(FieldError::required(&mpath.child("mountPath"), ""));
        }
    }
    if let Some(r) = c.get("resources") {
        validate_resources(r, &path.child("resources"), errs);
    }
}

/// Upstream `IsValidPortName`: an IANA service name, as container ports
/// and named target ports use.
pub fn is_valid_port_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push(max_len_error(15));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// A port number: 1-65535; `required` when 0 is not allowed to mean
/// "unset".
pub fn validate_port_number(
    v: Option<&Value>,
    path: &FieldPath,
    required: bool,
    errs: &mut Vec<FieldError>,
) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        if required {
            errs.push(FieldError::required(path, ""));
        }
        return;
    };
    let n = v.as_i64().unwrap_or(-1);
    if n == 0 && !required {
        return;
    }
    if !(1..=65535).contains(&n) {
        errs.push(FieldError::invalid(path, v, inclusive_range(1, 65535)));
    }
}

/// Requests and limits parse, are not negative, and no request exceeds
/// its limit.
fn validate_resources(r: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut parsed = |key: &str| {
        let mut out = Vec::new();
        if let Some(map) = r.get(key).and_then(Value::as_object) {
            for (name, v) in map {
                let qpath = path.child(key).key(name.as_str());
                match quantity::parse_value(v) {
                    None => errs.push(FieldError::invalid(&qpath, v, QUANTITY_ERROR)),
                    Some(q) if q.nanos() < 0 => errs.push(FieldError::invalid(
                        &qpath,
                        v,
                        "must be greater than or equal to 0",
                    )),
                    Some(q) => out.push((name.clone(), v.clone(), q)),
                }
            }
        }
        out
    };
    let limits = parsed("limits");
    let requests = parsed("requests");
    for (name, v, q) in &requests {
        if let Some((_, lv, lq)) = limits.iter().find(|(n, _, _)| n == name) {
            if q > lq {
                let shown = lv
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| lv.to_string());
                errs.push(FieldError::invalid(
                    &path.child("requests").key(name.as_str()),
                    v,
                    format!("must be less than or equal to {name} limit of {shown}"),
                ));
            }
        }
    }
}
