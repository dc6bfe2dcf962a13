//! Field management on every write, and server-side apply
//! (`application/apply-patch+yaml`).
//!
//! Upstream counterpart: the fieldmanager wrapped around every write
//! handler. The merge logic is `rkube_machinery::apply`; this module gives
//! it each resource's list semantics and the request's manager.

use http::HeaderMap;
use rkube_api::merge_keys::field_type;
use rkube_machinery::apply::{
    self as ssa, manager_or_user_agent, validate_patch_options, ApplySchema, FieldSet,
    FromPatchSchema, ListType, Path, Writer,
};
use rkube_machinery::{GroupKind, StatusError};
use rkube_registry::ResourceStore;
use serde_json::Value;

use crate::patch_schema::TypeSchema;
use crate::request::Query;

const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const LABEL_SELECTOR: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";

/// Apply semantics of one resource's type.
pub struct ResourceSchema {
    patch: TypeSchema,
    has_status: bool,
}

impl ResourceSchema {
    pub fn of(rs: &ResourceStore) -> ResourceSchema {
        ResourceSchema {
            patch: TypeSchema {
                root: rs.info.type_name,
            },
            has_status: rs.info.subresource("status").is_some(),
        }
    }

    /// The type at `path` (field names from the root), if known.
    fn type_at(&self, path: &[&str]) -> Option<&'static str> {
        path.iter()
            .try_fold(self.patch.root, |ty, field| field_type(ty, field))
    }
}

impl ApplySchema for ResourceSchema {
    fn list_type(&self, path: &[&str]) -> ListType {
        // Container ports are keyed by port and protocol together.
        if let Some((&"ports", parent)) = path.split_last() {
            if self.type_at(parent) == Some(CONTAINER) {
                return ListType::Map(vec!["containerPort".into(), "protocol".into()]);
            }
        }
        FromPatchSchema(&self.patch).list_type(path)
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        self.type_at(path) == Some(LABEL_SELECTOR)
    }

    fn key_default(&self, list: &[&str], key: &str) -> Option<Value> {
        (list.last() == Some(&"ports") && key == "protocol").then(|| Value::from("TCP"))
    }

    fn reset_fields(&self, subresource: Option<&str>) -> FieldSet {
        if !self.has_status {
            return FieldSet::new();
        }
        let field = if subresource == Some("status") {
            "spec"
        } else {
            "status"
        };
        FieldSet::from_paths([&Path::fields(&[field])])
    }
}

/// The manager of a write: the `fieldManager` parameter or one derived
/// from the client's user agent.
pub fn manager(query: &Query, headers: &HeaderMap) -> String {
    let agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    manager_or_user_agent(query.get("fieldManager"), agent)
}

/// Check `fieldManager` and `force` as upstream's PatchOptions validation.
pub fn check_options(query: &Query, is_apply: bool) -> Result<(), StatusError> {
    let force = query.get("force").map(|f| f == "true");
    let errs = validate_patch_options(is_apply, query.get("fieldManager").unwrap_or(""), force);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(
            &GroupKind::new("meta.k8s.io", "PatchOptions"),
            "",
            &errs,
        ))
    }
}

fn writer<'a>(manager: &'a str, subresource: Option<&'a str>) -> Writer<'a> {
    Writer {
        manager,
        subresource,
        now: chrono_now(),
    }
}

fn chrono_now() -> rkube_machinery::time::Timestamp {
    use rkube_machinery::time::Clock;
    rkube_machinery::time::SystemClock.now()
}

/// managedFields after an ordinary write of `new` over `old` (Null on
/// create); `new` is taken, not copied: the callers have no further use
/// for it, and copying every written object showed in profiles.
pub fn record(
    rs: &ResourceStore,
    old: &Value,
    new: Value,
    manager: &str,
    subresource: Option<&str>,
) -> Value {
    ssa::record_update_owned(
        old,
        new,
        &writer(manager, subresource),
        &ResourceSchema::of(rs),
    )
}

/// Server-side apply of `applied` over `live` (Null when absent).
pub fn apply(
    rs: &ResourceStore,
    live: &Value,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
) -> Result<Value, StatusError> {
    ssa::apply(
        live,
        applied,
        &writer(manager, subresource),
        force,
        &ResourceSchema::of(rs),
    )
    .map_err(|e| e.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ports_key_on_port_and_protocol() {
        let schema = ResourceSchema {
            patch: TypeSchema {
                root: "io.k8s.api.apps.v1.Deployment",
            },
            has_status: true,
        };
        assert_eq!(
            schema.list_type(&["spec", "template", "spec", "containers", "ports"]),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            schema.list_type(&["spec", "template", "spec", "containers"]),
            ListType::Map(vec!["name".into()])
        );
        assert!(schema.atomic_map(&["spec", "selector"]));
    }
}
