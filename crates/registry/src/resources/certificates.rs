//! CertificateSigningRequests: a request for a certificate, approved or
//! denied through the `approval` subresource and signed through `status`.
//!
//! Upstream counterpart: `pkg/registry/certificates/certificates/
//! strategy.go` (the main, status and approval strategies) and
//! `pkg/apis/certificates/validation` (`ValidateCertificateSigningRequest
//! Create`, the condition rules of `validateConditions`).

use base64::Engine;
use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::util::{items, str_at};
use crate::strategy::copy_field;
use crate::{Strategy, Target};

pub struct CsrStrategy;

/// Shortest certificate lifetime a request may ask for.
const MIN_EXPIRATION_SECONDS: i64 = 600;

fn validate_request(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = FieldPath::new("spec");
    let request = str_at(obj, "/spec/request");
    if request.is_empty() {
        errs.push(FieldError::required(&spec.child("request"), ""));
    } else {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(request)
            .unwrap_or_default();
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE REQUEST-----") {
            errs.push(FieldError::invalid(
                &spec.child("request"),
                "<omitted>",
                "PEM block type must be CERTIFICATE REQUEST",
            ));
        }
    }
    if str_at(obj, "/spec/signerName").is_empty() {
        errs.push(FieldError::required(&spec.child("signerName"), ""));
    }
    if items(obj.get("spec").unwrap_or(&Value::Null), "usages").is_empty() {
        errs.push(FieldError::required(&spec.child("usages"), ""));
    }
    if let Some(secs) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
    {
        if secs < MIN_EXPIRATION_SECONDS {
            errs.push(FieldError::invalid(
                &spec.child("expirationSeconds"),
                secs,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
}

/// The rules on status.conditions: one of each type, never both Approved
/// and Denied, and a decision once made stays.
fn validate_conditions(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = FieldPath::new("status").child("conditions");
    let conditions = items(new.get("status").unwrap_or(&Value::Null), "conditions");
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let kind = str_at(c, "/type");
        let type_path = path.index(i).child("type");
        if kind.is_empty() {
            errs.push(FieldError::required(&type_path, ""));
            continue;
        }
        if seen.contains(&kind) {
            errs.push(FieldError::duplicate(&type_path, kind));
        }
        let other = match kind {
            "Approved" => Some("Denied"),
            "Denied" => Some("Approved"),
            _ => None,
        };
        if other.is_some_and(|o| seen.contains(&o)) {
            errs.push(FieldError::invalid(
                &type_path,
                kind,
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        let status = str_at(c, "/status");
        if matches!(kind, "Approved" | "Denied" | "Failed")
            && !status.is_empty()
            && status != "True"
        {
            errs.push(FieldError::not_supported(
                &path.index(i).child("status"),
                status,
                &["True"],
            ));
        }
        seen.push(kind);
    }
    for old_cond in items(old.get("status").unwrap_or(&Value::Null), "conditions") {
        let kind = str_at(old_cond, "/type");
        if matches!(kind, "Approved" | "Denied") && !seen.contains(&kind) {
            errs.push(FieldError::forbidden(
                &path,
                format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    errs
}

impl Strategy for CsrStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Only metadata changes through the main resource.
        copy_field(new, old, "spec");
        copy_field(new, old, "status");
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_request(obj, &mut errs);
        errs
    }

    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    fn prepare_target_update(&self, target: Target, new: &mut Value) {
        if target != Target::Approval {
            return;
        }
        // A condition without a status is a True one.
        let conditions = new
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut);
        for c in conditions.into_iter().flatten() {
            if let Some(map) = c.as_object_mut() {
                if map
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    map.insert("status".into(), "True".into());
                }
            }
        }
    }

    fn validate_target_update(&self, target: Target, new: &Value, old: &Value) -> Vec<FieldError> {
        match target {
            Target::Approval | Target::Status => validate_conditions(new, old),
            _ => Vec::new(),
        }
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
    fn requests_need_a_pem_csr_a_signer_and_usages() {
        let pem = base64::engine::general_purpose::STANDARD.encode(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        );
        let ok = json!({"spec": {"request": pem, "signerName": "kubernetes.io/kube-apiserver-client",
                                 "usages": ["client auth"]}});
        assert!(CsrStrategy.validate(&ok).is_empty());
        let bad = json!({"spec": {"request": "aGVsbG8=", "expirationSeconds": 60}});
        assert_eq!(
            messages(&CsrStrategy.validate(&bad)),
            [
                r#"spec.request: Invalid value: "<omitted>": PEM block type must be CERTIFICATE REQUEST"#,
                "spec.signerName: Required value",
                "spec.usages: Required value",
                "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
            ]
        );
    }

    #[test]
    fn approval_conditions_are_exclusive_and_final() {
        let approved = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}]}});
        assert!(CsrStrategy
            .validate_target_update(Target::Approval, &approved, &json!({}))
            .is_empty());
        let both = json!({"status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}]}});
        assert_eq!(
            messages(&CsrStrategy.validate_target_update(Target::Approval, &both, &json!({}))),
            [
                r#"status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually exclusive"#
            ]
        );
        assert_eq!(
            messages(&CsrStrategy.validate_target_update(Target::Approval, &json!({}), &approved)),
            [
                r#"status.conditions: Forbidden: updates may not remove a condition of type "Approved""#
            ]
        );
        let mut bare = json!({"status": {"conditions": [{"type": "Approved"}]}});
        CsrStrategy.prepare_target_update(Target::Approval, &mut bare);
        assert_eq!(bare["status"]["conditions"][0]["status"], "True");
    }
}
