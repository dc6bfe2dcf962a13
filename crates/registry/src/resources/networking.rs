//! networking.k8s.io: Ingresses (rules and backends checked, status by
//! the ingress controller), IngressClasses (their controller fixed) and
//! NetworkPolicies.
//!
//! Upstream counterpart: `pkg/registry/networking/{ingress,ingressclass,
//! networkpolicy}/strategy.go` and `pkg/apis/networking/validation`
//! (`ValidateIngressSpec`, `validateIngressBackend`,
//! `ValidateIngressClassUpdate`, `ValidateNetworkPolicySpec`).

use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::util::{items, str_at};
use crate::{DefaultStrategy, Strategy};

const WITH_STATUS: DefaultStrategy = DefaultStrategy {
    has_status: true,
    tracks_generation: true,
    allow_create_on_update: false,
};

fn validate_backend(backend: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let service = backend.get("service").filter(|v| !v.is_null());
    let resource = backend.get("resource").filter(|v| !v.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            backend,
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            backend,
            "resource or service backend is required",
        )),
        (Some(svc), None) => {
            let svc_path = path.child("service");
            if str_at(svc, "/name").is_empty() {
                errs.push(FieldError::required(&svc_path.child("name"), ""));
            }
            let port = svc.get("port").cloned().unwrap_or(Value::Null);
            let name = str_at(&port, "/name");
            let number = port.get("number").and_then(Value::as_i64).unwrap_or(0);
            let port_path = svc_path.child("port");
            if !name.is_empty() && number != 0 {
                errs.push(FieldError::invalid(
                    &port_path,
                    &port,
                    "cannot set both port name & port number",
                ));
            } else if name.is_empty() && number == 0 {
                errs.push(FieldError::invalid(
                    &port_path,
                    &port,
                    "port name or number is required",
                ));
            } else if number != 0 && !(1..=65535).contains(&number) {
                errs.push(FieldError::invalid(
                    &port_path.child("number"),
                    number,
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        (None, Some(_)) => {}
    }
}

fn validate_ingress(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec_path = FieldPath::new("spec");
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let backend = spec.get("defaultBackend").filter(|v| !v.is_null());
    let rules = items(&spec, "rules");
    if backend.is_none() && rules.is_empty() {
        errs.push(FieldError::invalid(
            &spec_path,
            &spec,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = backend {
        validate_backend(b, &spec_path.child("defaultBackend"), &mut errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = spec_path.child("rules").index(i);
        let host = str_at(rule, "/host");
        if host.parse::<std::net::IpAddr>().is_ok() {
            errs.push(FieldError::invalid(
                &rule_path.child("host"),
                host,
                "must be a DNS name, not an IP address",
            ));
        }
        let Some(http) = rule.get("http").filter(|v| !v.is_null()) else {
            continue;
        };
        let paths_path = rule_path.child("http").child("paths");
        let paths = items(http, "paths");
        if paths.is_empty() {
            errs.push(FieldError::required(&paths_path, ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let p_path = paths_path.index(j);
            let path = str_at(p, "/path");
            match str_at(p, "/pathType") {
                "" => errs.push(FieldError::required(
                    &p_path.child("pathType"),
                    "pathType must be specified",
                )),
                "Exact" | "Prefix" => {
                    if !path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            &p_path.child("path"),
                            path,
                            "must be an absolute path",
                        ));
                    }
                }
                "ImplementationSpecific" => {
                    if !path.is_empty() && !path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            &p_path.child("path"),
                            path,
                            "must be an absolute path",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    &p_path.child("pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            let backend = p.get("backend").cloned().unwrap_or(Value::Null);
            validate_backend(&backend, &p_path.child("backend"), &mut errs);
        }
    }
    errs
}

/// Ingresses.
pub struct IngressStrategy;

impl Strategy for IngressStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        WITH_STATUS.prepare_for_create(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        WITH_STATUS.prepare_for_update(new, old);
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_ingress(obj)
    }
}

/// IngressClasses.
pub struct IngressClassStrategy;

impl Strategy for IngressClassStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let controller = str_at(obj, "/spec/controller");
        if controller.is_empty() {
            errs.push(FieldError::required(
                &FieldPath::new("spec").child("controller"),
                "",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let controller = str_at(new, "/spec/controller");
        if controller != str_at(old, "/spec/controller") {
            errs.push(FieldError::invalid(
                &FieldPath::new("spec").child("controller"),
                controller,
                "field is immutable",
            ));
        }
        errs
    }
}

/// NetworkPolicies.
pub struct NetworkPolicyStrategy;

impl Strategy for NetworkPolicyStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = FieldPath::new("spec");
        let types = items(obj.get("spec").unwrap_or(&Value::Null), "policyTypes");
        if types.len() > 2 {
            errs.push(FieldError::invalid(
                &spec.child("policyTypes"),
                obj.pointer("/spec/policyTypes")
                    .cloned()
                    .unwrap_or(Value::Null),
                "may not specify more than two policyTypes",
            ));
        }
        for (i, t) in types.iter().enumerate() {
            let t = t.as_str().unwrap_or("");
            if t != "Ingress" && t != "Egress" {
                errs.push(FieldError::not_supported(
                    &spec.child("policyTypes").index(i),
                    t,
                    &["Ingress", "Egress"],
                ));
            }
        }
        for dir in ["ingress", "egress"] {
            let rules = items(obj.get("spec").unwrap_or(&Value::Null), dir);
            for (i, rule) in rules.iter().enumerate() {
                for (j, port) in items(rule, "ports").iter().enumerate() {
                    let proto = str_at(port, "/protocol");
                    if !proto.is_empty() && !matches!(proto, "TCP" | "UDP" | "SCTP") {
                        errs.push(FieldError::not_supported(
                            &spec
                                .child(dir)
                                .index(i)
                                .child("ports")
                                .index(j)
                                .child("protocol"),
                            proto,
                            &["SCTP", "TCP", "UDP"],
                        ));
                    }
                }
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ingress_paths_need_a_type_and_a_backend() {
        let ing = json!({"spec": {"rules": [{"host": "example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "api", "backend": {"service": {"name": "api", "port": {"name": "http", "number": 8080}}}},
            {"path": "x", "pathType": "Exact", "backend": {}}]}}]}});
        let errs = messages(&IngressStrategy.validate(&ing));
        assert_eq!(
            errs[0],
            "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified"
        );
        assert!(errs[1]
            .starts_with("spec.rules[0].http.paths[1].backend.service.port: Invalid value: "));
        assert!(errs[1].ends_with("cannot set both port name & port number"));
        assert_eq!(
            errs[2],
            r#"spec.rules[0].http.paths[2].path: Invalid value: "x": must be an absolute path"#
        );
        assert!(errs[3].ends_with("resource or service backend is required"));
        assert_eq!(errs.len(), 4);
        let empty = json!({"spec": {}});
        assert!(messages(&IngressStrategy.validate(&empty))[0]
            .ends_with("either `defaultBackend` or `rules` must be specified"));
    }

    #[test]
    fn ingress_class_controller_is_fixed() {
        let ic = json!({"spec": {"controller": "example.com/a"}});
        let moved = json!({"spec": {"controller": "example.com/b"}});
        assert_eq!(
            messages(&IngressClassStrategy.validate_update(&moved, &ic)),
            [r#"spec.controller: Invalid value: "example.com/b": field is immutable"#]
        );
    }

    #[test]
    fn network_policy_types_and_protocols() {
        let np = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Sideways"],
            "ingress": [{"ports": [{"protocol": "ICMP", "port": 1}]}]}});
        assert_eq!(
            messages(&NetworkPolicyStrategy.validate(&np)),
            [
                r#"spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress""#,
                r#"spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
            ]
        );
    }
}
