//! LimitRanger admission: containers get the default requests and limits
//! of their namespace's LimitRanges, and pods and claims outside a
//! range's min, max or limit/request ratio are refused.
//!
//! Upstream counterpart: `plugin/pkg/admission/limitranger/admission.go`
//! (`mergePodResourceRequirements`, `PodValidateLimitFunc`,
//! `PersistentVolumeClaimValidateLimitFunc` and the `minConstraint`,
//! `maxConstraint` and `limitRequestRatioConstraint` messages).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::resources::quantity::{self, Quantity};
use crate::resources::util::{child, items, str_at, str_field};

/// The annotation naming what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// A resource list as parsed quantities, each with whether it prints
/// binary.
type List = BTreeMap<String, (Quantity, bool)>;

fn list(v: Option<&Value>) -> List {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| {
            let parsed = quantity::parse_value(q)?;
            let binary = q.as_str().is_some_and(quantity::is_binary);
            Some((k.clone(), (parsed, binary)))
        })
        .collect()
}

fn show((q, binary): (Quantity, bool)) -> String {
    quantity::format(q, binary)
}

/// The limit items of `kind` (`Container`, `Pod`, `PersistentVolumeClaim`)
/// of every range, in order.
fn limit_items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .flat_map(|r| items(r.get("spec").unwrap_or(&Value::Null), "limits"))
        .filter(move |l| str_at(l, "/type") == kind)
}

/// Give each container the default limits and requests it lacks, and
/// note what was set in the pod's `kubernetes.io/limit-ranger`
/// annotation.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) {
    let mut default_limits = Map::new();
    let mut default_requests = Map::new();
    for item in limit_items(ranges, "Container") {
        for (key, into) in [
            ("default", &mut default_limits),
            ("defaultRequest", &mut default_requests),
        ] {
            if let Some(m) = item.get(key).and_then(Value::as_object) {
                into.extend(m.clone());
            }
        }
    }
    if default_limits.is_empty() && default_requests.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        for (key, what) in [
            ("initContainers", "init container"),
            ("containers", "container"),
        ] {
            for c in spec
                .get_mut(key)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                let name = str_field(c, "name").to_string();
                let resources = child(c, "resources");
                let mut set = |field: &str, defaults: &Map<String, Value>| {
                    let target = child(resources, field);
                    let mut names: Vec<String> = Vec::new();
                    for (k, v) in defaults {
                        if !target.contains_key(k) {
                            target.insert(k.clone(), v.clone());
                            names.push(k.clone());
                        }
                    }
                    if target.is_empty() {
                        resources.remove(field);
                    }
                    names.sort();
                    names
                };
                let requests = set("requests", &default_requests);
                let limits = set("limits", &default_limits);
                if !requests.is_empty() {
                    notes.push(format!("{} request for {what} {name}", requests.join(", ")));
                }
                if !limits.is_empty() {
                    notes.push(format!("{} limit for {what} {name}", limits.join(", ")));
                }
            }
        }
    }
    if !notes.is_empty() {
        let annotations = child(crate::meta::metadata_mut(pod), "annotations");
        annotations.insert(
            ANNOTATION.into(),
            format!("LimitRanger plugin set: {}", notes.join("; ")).into(),
        );
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    min: (Quantity, bool),
    req: &List,
    lim: &List,
) -> Option<String> {
    let Some(&r) = req.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {}.  No request is specified",
            show(min)
        ));
    };
    if r.0 < min.0 {
        return Some(format!(
            "minimum {name} usage per {kind} is {}, but request is {}",
            show(min),
            show(r)
        ));
    }
    match lim.get(name) {
        Some(&l) if l.0 < min.0 => Some(format!(
            "minimum {name} usage per {kind} is {}, but limit is {}",
            show(min),
            show(l)
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    max: (Quantity, bool),
    req: &List,
    lim: &List,
) -> Option<String> {
    let Some(&l) = lim.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {}.  No limit is specified",
            show(max)
        ));
    };
    if l.0 > max.0 {
        return Some(format!(
            "maximum {name} usage per {kind} is {}, but limit is {}",
            show(max),
            show(l)
        ));
    }
    match req.get(name) {
        Some(&r) if r.0 > max.0 => Some(format!(
            "maximum {name} usage per {kind} is {}, but request is {}",
            show(max),
            show(r)
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    ratio: (Quantity, bool),
    req: &List,
    lim: &List,
) -> Option<String> {
    let prefix = format!(
        "{name} max limit to request ratio per {kind} is {}",
        show(ratio)
    );
    let r = req.get(name).map_or(0, |q| q.0.nanos());
    if r == 0 {
        return Some(format!(
            "{prefix}, but no request is specified or request is 0"
        ));
    }
    let l = lim.get(name).map_or(0, |q| q.0.nanos());
    if l == 0 {
        return Some(format!("{prefix}, but no limit is specified or limit is 0"));
    }
    let observed = l as f64 / r as f64;
    let allowed = ratio.0.nanos() as f64 / 1e9;
    (observed > allowed).then(|| format!("{prefix}, but provided ratio is {observed:.6}"))
}

/// The messages of every constraint `item` puts on a thing of `kind`
/// with these requests and limits.
fn check(kind: &str, item: &Value, req: &List, lim: &List, errs: &mut Vec<String>) {
    for (name, q) in list(item.get("min")) {
        errs.extend(min_constraint(kind, &name, q, req, lim));
    }
    for (name, q) in list(item.get("max")) {
        errs.extend(max_constraint(kind, &name, q, req, lim));
    }
    for (name, q) in list(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(kind, &name, q, req, lim));
    }
}

fn add(into: &mut List, from: &List) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert((Quantity::default(), v.1));
        e.0 = e.0.plus(v.0);
    }
}

fn max_into(into: &mut List, from: &List) {
    for (k, v) in from {
        match into.get(k) {
            Some(cur) if cur.0 >= v.0 => {}
            _ => {
                into.insert(k.clone(), *v);
            }
        }
    }
}

/// Why a pod breaks its namespace's ranges (empty when it does not).
pub fn validate_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let resources = |c: &Value, field: &str| list(c.pointer(&format!("/resources/{field}")));
    let all: Vec<&Value> = items(spec, "containers")
        .iter()
        .chain(items(spec, "initContainers"))
        .collect();
    for item in limit_items(ranges, "Container") {
        for c in &all {
            check(
                "Container",
                item,
                &resources(c, "requests"),
                &resources(c, "limits"),
                &mut errs,
            );
        }
    }
    let pod_items: Vec<&Value> = limit_items(ranges, "Pod").collect();
    if !pod_items.is_empty() {
        let (mut req, mut lim) = (List::new(), List::new());
        for c in items(spec, "containers") {
            add(&mut req, &resources(c, "requests"));
            add(&mut lim, &resources(c, "limits"));
        }
        for c in items(spec, "initContainers") {
            max_into(&mut req, &resources(c, "requests"));
            max_into(&mut lim, &resources(c, "limits"));
        }
        for item in pod_items {
            check("Pod", item, &req, &lim, &mut errs);
        }
    }
    errs
}

/// Why a claim breaks its namespace's ranges: its storage request against
/// the ranges' min and max.
pub fn validate_claim(claim: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let req = list(claim.pointer("/spec/resources/requests"));
    let lim = list(claim.pointer("/spec/resources/limits"));
    for item in limit_items(ranges, "PersistentVolumeClaim") {
        for (name, q) in list(item.get("min")) {
            errs.extend(min_constraint(
                "PersistentVolumeClaim",
                &name,
                q,
                &req,
                &lim,
            ));
        }
        for (name, max) in list(item.get("max")) {
            // A claim asks for storage by its request only.
            match req.get(&name) {
                None => errs.push(format!(
                    "maximum {name} usage per PersistentVolumeClaim is {}.  No request is specified",
                    show(max)
                )),
                Some(&r) if r.0 > max.0 => errs.push(format!(
                    "maximum {name} usage per PersistentVolumeClaim is {}, but request is {}",
                    show(max),
                    show(r)
                )),
                _ => {}
            }
        }
    }
    errs
}
