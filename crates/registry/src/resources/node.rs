//! Nodes: cluster-scoped, registered by their kubelet with status in the
//! create, their pod CIDR and provider ID fixed once set.
//!
//! Upstream counterpart: `pkg/registry/core/node/strategy.go`,
//! `ValidateNode(Update)` in `pkg/apis/core/validation/validation.go`,
//! `SetDefaults_NodeStatus` and the v1 conversion keeping `podCIDR` and
//! `podCIDRs` in step.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Value};

use crate::resources::util::{items, str_at};
use crate::strategy::copy_field;
use crate::Strategy;

const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];

pub struct NodeStrategy;

/// podCIDR is podCIDRs[0]; allocatable defaults to capacity.
pub fn default_node(node: &mut Value) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
        let single = spec
            .get("podCIDR")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let first = spec
            .get("podCIDRs")
            .and_then(|l| l.get(0))
            .and_then(Value::as_str)
            .map(str::to_string);
        match (single.is_empty(), first) {
            (false, None) => {
                spec.insert("podCIDRs".into(), json!([single]));
            }
            (true, Some(first)) => {
                spec.insert("podCIDR".into(), first.into());
            }
            _ => {}
        }
    }
    if let Some(status) = map.get_mut("status").and_then(Value::as_object_mut) {
        if status.get("allocatable").is_none_or(Value::is_null) {
            if let Some(cap) = status.get("capacity").cloned() {
                status.insert("allocatable".into(), cap);
            }
        }
    }
}

fn validate_node(node: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = FieldPath::new("spec");
    for (i, cidr) in items(node.get("spec").unwrap_or(&Value::Null), "podCIDRs")
        .iter()
        .enumerate()
    {
        let s = cidr.as_str().unwrap_or("");
        if !is_cidr(s) {
            errs.push(FieldError::invalid(
                &spec.child("podCIDRs").index(i),
                s,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    for (i, t) in items(node.get("spec").unwrap_or(&Value::Null), "taints")
        .iter()
        .enumerate()
    {
        let path = spec.child("taints").index(i);
        if str_at(t, "/key").is_empty() {
            errs.push(FieldError::required(&path.child("key"), ""));
        }
        let effect = str_at(t, "/effect");
        if effect.is_empty() {
            errs.push(FieldError::required(&path.child("effect"), ""));
        } else if !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                &path.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
    errs
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let max = match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    bits.parse::<u8>().is_ok_and(|b| b <= max)
}

impl Strategy for NodeStrategy {
    // A kubelet registers its node with status filled in: keep it.
    fn prepare_for_create(&self, obj: &mut Value) {
        default_node(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_node(obj)
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        copy_field(new, old, "status");
        default_node(new);
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_node(new);
        let spec = FieldPath::new("spec");
        let old_cidrs = old
            .pointer("/spec/podCIDRs")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty());
        if let Some(old_cidrs) = old_cidrs {
            if new.pointer("/spec/podCIDRs").and_then(Value::as_array) != Some(old_cidrs) {
                errs.push(FieldError::forbidden(
                    &spec.child("podCIDRs"),
                    "node updates may not change podCIDR except from \"\" to valid",
                ));
            }
        }
        let old_provider = str_at(old, "/spec/providerID");
        if !old_provider.is_empty() && old_provider != str_at(new, "/spec/providerID") {
            errs.push(FieldError::forbidden(
                &spec.child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        errs
    }
}
