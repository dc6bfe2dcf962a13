//! Validation of workload objects: selectors that match their template,
//! replica counts, the restart policy each controller can live with.
//!
//! Upstream counterpart: `pkg/apis/apps/validation/validation.go`,
//! `pkg/apis/batch/validation/validation.go` and the ReplicationController
//! part of `pkg/apis/core/validation/validation.go`.

use rkube_machinery::labels::Selector;
use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Value};

use super::Kind;
use crate::resources::pod::validation::validate_pod_spec;
use crate::resources::util::str_at;

const GE_ZERO: &str = "must be greater than or equal to 0";

pub fn validate_workload(kind: Kind, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = FieldPath::new("spec");
    let null = Value::Null;
    let s = obj.get("spec").unwrap_or(&null);
    for field in [
        "replicas",
        "revisionHistoryLimit",
        "minReadySeconds",
        "parallelism",
        "completions",
        "backoffLimit",
    ] {
        non_negative(s, field, &spec, &mut errs);
    }
    match kind {
        Kind::CronJob => {
            let jt = spec.child("jobTemplate").child("spec");
            let tpl = s.pointer("/jobTemplate/spec/template").unwrap_or(&null);
            check_template(
                tpl,
                &jt.child("template"),
                &["OnFailure", "Never"],
                &mut errs,
            );
            if str_at(s, "/schedule").is_empty() {
                errs.push(FieldError::required(&spec.child("schedule"), ""));
            }
            supported(
                s,
                "concurrencyPolicy",
                &["Allow", "Forbid", "Replace"],
                &spec,
                &mut errs,
            );
            return errs;
        }
        Kind::ReplicationController => {
            let selector = s.get("selector").and_then(Value::as_object);
            match selector {
                Some(sel) if !sel.is_empty() => {
                    let labels = s
                        .pointer("/template/metadata/labels")
                        .and_then(Value::as_object);
                    let matches =
                        labels.is_some_and(|l| sel.iter().all(|(k, v)| l.get(k) == Some(v)));
                    if s.get("template").is_some() && !matches {
                        errs.push(mismatch(s, &spec));
                    }
                }
                _ => errs.push(FieldError::required(&spec.child("selector"), "")),
            }
            if let Some(tpl) = s.get("template") {
                check_template(tpl, &spec.child("template"), &["Always"], &mut errs);
            }
            return errs;
        }
        _ => {}
    }
    check_selector(kind, s, &spec, &mut errs);
    let tpl = s.get("template").unwrap_or(&null);
    let with_claims;
    let tpl = if kind == Kind::StatefulSet {
        with_claims = with_claim_volumes(tpl, s);
        &with_claims
    } else {
        tpl
    };
    let allowed: &[&str] = if kind == Kind::Job {
        &["OnFailure", "Never"]
    } else {
        &["Always"]
    };
    check_template(tpl, &spec.child("template"), allowed, &mut errs);
    match kind {
        Kind::Deployment => deployment(s, &spec, &mut errs),
        Kind::StatefulSet => {
            supported(
                s,
                "podManagementPolicy",
                &["OrderedReady", "Parallel"],
                &spec,
                &mut errs,
            );
            let us = spec.child("updateStrategy");
            let ty = str_at(s, "/updateStrategy/type");
            if !["RollingUpdate", "OnDelete"].contains(&ty) {
                errs.push(FieldError::not_supported(
                    &us.child("type"),
                    ty,
                    &["OnDelete", "RollingUpdate"],
                ));
            }
        }
        Kind::DaemonSet => {
            let ty = str_at(s, "/updateStrategy/type");
            if !["RollingUpdate", "OnDelete"].contains(&ty) {
                errs.push(FieldError::not_supported(
                    &spec.child("updateStrategy").child("type"),
                    ty,
                    &["OnDelete", "RollingUpdate"],
                ));
            }
        }
        Kind::Job => {
            supported(
                s,
                "completionMode",
                &["NonIndexed", "Indexed"],
                &spec,
                &mut errs,
            );
            if s.get("manualSelector").and_then(Value::as_bool) != Some(true) {
                let want = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": crate::meta::uid(obj)}});
                if let Some(sel) = s.get("selector").filter(|s| **s != want) {
                    errs.push(FieldError::invalid(
                        &spec.child("selector"),
                        sel,
                        "`selector` not auto-generated",
                    ));
                }
            }
        }
        _ => {}
    }
    errs
}

fn non_negative(s: &Value, field: &str, spec: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(v) = s.get(field).filter(|v| !v.is_null()) {
        if v.as_i64().is_none_or(|n| n < 0) {
            errs.push(FieldError::invalid(&spec.child(field), v, GE_ZERO));
        }
    }
}

fn supported(
    s: &Value,
    field: &str,
    values: &[&str],
    spec: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let v = s.get(field).and_then(Value::as_str).unwrap_or("");
    if !values.contains(&v) {
        errs.push(FieldError::not_supported(&spec.child(field), v, values));
    }
}

fn mismatch(s: &Value, spec: &FieldPath) -> FieldError {
    let labels = s
        .pointer("/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    FieldError::invalid(
        &spec.child("template").child("metadata").child("labels"),
        labels,
        "`selector` does not match template `labels`",
    )
}

/// The selector is required, not empty, valid, and selects the template.
fn check_selector(kind: Kind, s: &Value, spec: &FieldPath, errs: &mut Vec<FieldError>) {
    let path = spec.child("selector");
    let Some(sel) = s.get("selector").filter(|v| !v.is_null()) else {
        errs.push(FieldError::required(&path, ""));
        return;
    };
    match Selector::from_label_selector(Some(sel)) {
        Err(e) => errs.push(FieldError::invalid(&path, sel, e.to_string())),
        Ok(selector) if selector.is_empty() => {
            let what = match kind {
                Kind::Deployment => "deployment",
                Kind::Job => "job",
                _ => "",
            };
            if what.is_empty() {
                errs.push(FieldError::invalid(&path, sel, "empty selector is invalid"));
            } else {
                errs.push(FieldError::invalid(
                    &path,
                    sel,
                    format!("empty selector is invalid for {what}"),
                ));
            }
        }
        Ok(selector) => {
            if let Some(tpl) = s.get("template") {
                if !selector.matches_object(tpl) {
                    errs.push(mismatch(s, spec));
                }
            }
        }
    }
}

/// A StatefulSet's template as its pods get it: a volume per claim
/// template, which the containers may mount (upstream leaves the
/// template's volumes unchecked for this reason).
fn with_claim_volumes(tpl: &Value, s: &Value) -> Value {
    let mut tpl = tpl.clone();
    let claims: Vec<Value> = s
        .get("volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
        .map(|n| json!({"name": n, "persistentVolumeClaim": {"claimName": n}}))
        .collect();
    if claims.is_empty() {
        return tpl;
    }
    if let Some(spec) = tpl.get_mut("spec").and_then(Value::as_object_mut) {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        match volumes.as_array_mut() {
            Some(list) => list.extend(claims),
            None => *volumes = Value::Array(claims),
        }
    }
    tpl
}

/// The template's pod spec, and a restart policy the controller accepts.
fn check_template(tpl: &Value, path: &FieldPath, allowed: &[&str], errs: &mut Vec<FieldError>) {
    let spec_path = path.child("spec");
    let null = Value::Null;
    let pod_spec = tpl.get("spec").unwrap_or(&null);
    let before = errs.len();
    errs.extend(validate_pod_spec(pod_spec, &spec_path));
    let policy_path = spec_path.child("restartPolicy");
    let policy = pod_spec.get("restartPolicy").and_then(Value::as_str);
    let policy_reported = errs[before..]
        .iter()
        .any(|e| e.field == policy_path.to_string());
    let p = policy.unwrap_or("");
    if !policy_reported && !allowed.contains(&p) {
        errs.push(FieldError::not_supported(&policy_path, p, allowed));
    }
}

fn deployment(s: &Value, spec: &FieldPath, errs: &mut Vec<FieldError>) {
    let strategy = spec.child("strategy");
    let ty = str_at(s, "/strategy/type");
    if !["Recreate", "RollingUpdate"].contains(&ty) {
        errs.push(FieldError::not_supported(
            &strategy.child("type"),
            ty,
            &["Recreate", "RollingUpdate"],
        ));
    }
    if ty == "Recreate"
        && s.pointer("/strategy/rollingUpdate")
            .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            &strategy.child("rollingUpdate"),
            "may not be specified when strategy `type` is 'Recreate'",
        ));
    }
    if ty == "RollingUpdate" {
        let ru = strategy.child("rollingUpdate");
        let unavailable = int_or_percent(
            s.pointer("/strategy/rollingUpdate/maxUnavailable"),
            &ru.child("maxUnavailable"),
            errs,
        );
        let surge = int_or_percent(
            s.pointer("/strategy/rollingUpdate/maxSurge"),
            &ru.child("maxSurge"),
            errs,
        );
        if unavailable == Some(0) && surge == Some(0) {
            let v = s
                .pointer("/strategy/rollingUpdate/maxUnavailable")
                .cloned()
                .unwrap_or(json!(0));
            errs.push(FieldError::invalid(
                &ru.child("maxUnavailable"),
                v,
                "may not be 0 when `maxSurge` is 0",
            ));
        }
    }
    let deadline = s.get("progressDeadlineSeconds").and_then(Value::as_i64);
    let min_ready = s
        .get("minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(d) = deadline {
        if d <= min_ready {
            errs.push(FieldError::invalid(
                &spec.child("progressDeadlineSeconds"),
                d,
                "must be greater than minReadySeconds",
            ));
        }
    }
}

/// An IntOrString of a rolling update: a non-negative integer or a
/// percentage; returns its numeric part.
fn int_or_percent(v: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) -> Option<i64> {
    match v? {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                errs.push(FieldError::invalid(path, n, GE_ZERO));
            }
            Some(n)
        }
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if p > 100 => {
                errs.push(FieldError::invalid(
                    path,
                    s.as_str(),
                    "must not be greater than 100%",
                ));
                Some(p)
            }
            Some(p) if p < 0 => {
                errs.push(FieldError::invalid(path, s.as_str(), GE_ZERO));
                Some(p)
            }
            Some(p) => Some(p),
            None => {
                errs.push(FieldError::invalid(path, s.as_str(), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
                None
            }
        },
        other => {
            errs.push(FieldError::invalid(
                path,
                other,
                "must be an integer or percentage (e.g '5%')",
            ));
            None
        }
    }
}

/// What updates may not change: the selector of apps/v1 workloads and
/// Jobs, most of a StatefulSet's spec, a Job's template.
pub fn validate_workload_update(kind: Kind, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_workload(kind, new);
    let spec = FieldPath::new("spec");
    let immutable = |field: &str, errs: &mut Vec<FieldError>| {
        let (n, o) = (
            new.pointer(&format!("/spec/{field}")),
            old.pointer(&format!("/spec/{field}")),
        );
        if n != o {
            errs.push(FieldError::invalid(
                &spec.child(field),
                n.cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    };
    match kind {
        Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet => immutable("selector", &mut errs),
        Kind::StatefulSet => {
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(json!({}));
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                s
            };
            if strip(new) != strip(old) {
                errs.push(FieldError::forbidden(&spec, "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
            }
        }
        Kind::Job => {
            immutable("selector", &mut errs);
            immutable("completions", &mut errs);
            let suspended = old.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
            if !suspended {
                immutable("template", &mut errs);
            }
        }
        Kind::ReplicationController | Kind::CronJob => {}
    }
    errs
}
