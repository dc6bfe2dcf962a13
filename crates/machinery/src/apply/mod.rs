//! Server-side apply and managedFields bookkeeping, as pure functions over
//! JSON objects.
//!
//! Upstream counterparts: `sigs.k8s.io/structured-merge-diff` (field sets,
//! structured merge, conflicts) and `k8s.io/apimachinery/pkg/util/
//! managedfields` with `apiserver/pkg/endpoints/handlers/fieldmanager`
//! (who owns what in `metadata.managedFields`).
//!
//! Two entry points, both given the stored object without decoding it:
//!
//! * [`apply`] — a PATCH with `application/apply-patch+yaml`: merges the
//!   user's configuration into the live object, drops fields the applier
//!   stopped applying (unless someone else owns them), refuses to change
//!   fields other managers own unless forced, and records the applier.
//! * [`record_update`] — every other write (create, update, patch): the
//!   writer gains the fields it changed, others lose them.
//!
//! In the API server's PATCH handler: check the query with
//! [`validate_patch_options`]; for `application/apply-patch+yaml` decode
//! the body (kubectl and client libraries send JSON, which is YAML) and
//! call [`apply`] with the stored object or `Null`, then run the usual
//! create/update strategy on the result; [`ApplyError::to_status`] gives
//! the error body. Every other write calls [`record_update`] on the
//! object it is about to store, with the manager from
//! [`manager_or_user_agent`].
//!
//! Differences from upstream worth knowing: sets are not converted between
//! API versions (an applier's fields are read as if every version had the
//! same shape); dry runs and admission are the caller's business.

mod last_applied;
mod managed;
mod path;
mod schema;
mod set;
mod typed;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use last_applied::{KUBECTL_MANAGER, LAST_APPLIED_ANNOTATION};
pub use managed::{
    cap_update_managers, decode as decode_managed_fields, encode as encode_managed_fields,
    is_reset as is_managed_fields_reset, manager_or_user_agent, validate_field_manager,
    validate_patch_options, DecodeError, Entry, Managed, ManagerId, Operation,
    FIELD_MANAGER_MAX_LENGTH, MAX_UPDATE_MANAGERS,
};
pub use path::{Path, PathElement};
pub use schema::{ApplySchema, ApplyTable, FromPatchSchema, ListType};
pub use set::{FieldSet, FieldsV1Error};
pub use typed::{compare, field_set, merge, remove, Comparison};

use crate::status::{Status, StatusCause, StatusDetails, StatusError};
use crate::time::{format_time, Timestamp};

/// The manager that owns an object's fields when it is first applied to
/// after being written without managedFields.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Who is writing, through which subresource, and when.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The `fieldManager` query parameter, or the name derived from the
    /// user agent ([`manager_or_user_agent`]).
    pub manager: &'a str,
    /// `Some("status")` for writes to `/status`.
    pub subresource: Option<&'a str>,
    pub now: Timestamp,
}

/// One field another manager owns and the apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: ManagerId,
    pub path: Path,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    #[error("apply patch must be an object")]
    NotAnObject,
    /// Missing or different apiVersion/kind; Go prints the kind as
    /// `apps/v1, Kind=Deployment`.
    #[error("invalid object type: {0}")]
    InvalidObjectType(String),
    #[error("metadata.name: Required value: name is required in an apply patch")]
    MissingName,
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsSet,
    #[error("failed to create typed patch object: {}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl ApplyError {
    /// The `metav1.Status` kube-apiserver answers with: 409 with one
    /// `FieldManagerConflict` cause per field for conflicts, 400 otherwise.
    pub fn to_status(&self) -> StatusError {
        match self {
            ApplyError::Conflicts(conflicts) => {
                let causes = conflicts
                    .iter()
                    .map(|c| StatusCause {
                        cause_type: "FieldManagerConflict".to_owned(),
                        message: format!("conflict with {}", c.manager.describe()),
                        field: c.path.to_string(),
                    })
                    .collect();
                let mut s = Status::failure(409, "Conflict", self.to_string());
                s.details = Some(StatusDetails {
                    causes,
                    ..StatusDetails::default()
                });
                s.into()
            }
            other => StatusError::bad_request(other.to_string()),
        }
    }
}

/// Upstream's wording: one conflict on one line, several grouped by
/// manager with one `- path` line each.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager.describe(),
            c.path
        );
    }
    let mut lines = Vec::new();
    let mut current: Option<&ManagerId> = None;
    for c in conflicts {
        if current != Some(&c.manager) {
            lines.push(format!("conflicts with {}:", c.manager.describe()));
            current = Some(&c.manager);
        }
        lines.push(format!("- {}", c.path));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

fn text<'v>(obj: &'v Value, path: &[&str]) -> &'v str {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or("")
}

/// Go's `GroupVersionKind.String()`: `apps/v1, Kind=Deployment`,
/// `/v1, Kind=Pod`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

fn stripped(obj: &Value) -> Option<Value> {
    obj.is_object().then(|| {
        let mut v = obj.clone();
        managed::strip(&mut v);
        v
    })
}

/// Server-side apply of `applied` (the user's configuration, decoded from
/// YAML) onto `live` (`Value::Null` when the object does not exist yet).
/// Returns the new object with its managedFields, ready for the
/// strategy's update (which resets fields such as `status`) and storage.
/// Unreadable managedFields in `live` count as none. For the manager
/// `kubectl`, conflicts with an earlier client-side apply of the same
/// values are taken over, and the last-applied annotation is kept in sync
/// (see [`LAST_APPLIED_ANNOTATION`]).
pub fn apply(
    live: &Value,
    applied: &Value,
    writer: &Writer,
    force: bool,
    schema: &dyn ApplySchema,
) -> Result<Value, ApplyError> {
    let kubectl = writer.manager == last_applied::KUBECTL_MANAGER;
    let mut out = match apply_once(live, applied, writer, force, schema) {
        Err(ApplyError::Conflicts(conflicts)) if kubectl => {
            let api_version = text(applied, &["apiVersion"]);
            let Some(allowed) = last_applied::allowed_conflicts(live, api_version, schema) else {
                return Err(ApplyError::Conflicts(conflicts));
            };
            let rest: Vec<Conflict> = conflicts
                .into_iter()
                .filter(|c| !allowed.has(&c.path))
                .collect();
            if !rest.is_empty() {
                return Err(ApplyError::Conflicts(rest));
            }
            apply_once(live, applied, writer, true, schema)?
        }
        other => other?,
    };
    if kubectl {
        last_applied::sync(&mut out, applied);
    }
    Ok(out)
}

fn apply_once(
    live: &Value,
    applied: &Value,
    writer: &Writer,
    force: bool,
    schema: &dyn ApplySchema,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    let api_version = text(applied, &["apiVersion"]);
    let kind = text(applied, &["kind"]);
    let (live_version, live_kind) = (text(live, &["apiVersion"]), text(live, &["kind"]));
    let mismatch = !live_kind.is_empty() && (live_kind != kind || live_version != api_version);
    if api_version.is_empty() || kind.is_empty() || mismatch {
        return Err(ApplyError::InvalidObjectType(gvk_string(api_version, kind)));
    }
    if text(applied, &["metadata", "name"]).is_empty() {
        return Err(ApplyError::MissingName);
    }
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApplyError::ManagedFieldsSet);
    }
    let (config_set, errors) = typed::field_set_with_errors(applied, schema);
    if !errors.is_empty() {
        return Err(ApplyError::Invalid(errors));
    }
    let reset = schema.reset_fields(writer.subresource);
    let config_set = config_set.recursive_difference(&reset);
    let now = format_time(&writer.now);

    let live_obj = stripped(live);
    let mut managed = managed::decode(live).unwrap_or_default();
    if let (Some(l), true) = (&live_obj, managed.is_empty()) {
        // Objects written before anyone tracked fields: what is there
        // belongs to a placeholder manager, so applying over it conflicts.
        let id = ManagerId::update(BEFORE_FIRST_APPLY, live_version, writer.subresource);
        let cmp = compare(None, Some(l), schema).filter(&reset);
        track_update(&mut managed, &cmp, id, live_version, &now);
    }

    let id = ManagerId::apply(writer.manager, writer.subresource);
    let previous = managed.remove(&id);
    let base = live_obj
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut merged = merge(&base, applied, schema);
    managed::strip(&mut merged);
    managed.insert(
        id.clone(),
        Entry {
            set: config_set,
            api_version: api_version.to_owned(),
            time: previous.as_ref().and_then(|e| e.time.clone()),
        },
    );
    if let Some(last) = previous {
        // Fields this applier dropped from its configuration go, unless
        // another manager (or the new configuration) still owns them.
        let owned = managed
            .values()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.set));
        remove(&mut merged, &last.set.difference(&owned), schema);
    }

    let cmp = compare(live_obj.as_ref(), Some(&merged), schema).filter(&reset);
    let changed = cmp.added.union(&cmp.modified);
    let mut conflicts = Vec::new();
    for (other, entry) in managed.iter_mut() {
        if *other == id {
            continue;
        }
        let taken = entry.set.intersection(&changed);
        conflicts.extend(taken.paths().into_iter().map(|path| Conflict {
            manager: other.clone(),
            path,
        }));
        entry.set = entry.set.difference(&taken).difference(&cmp.removed);
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    if live_obj.as_ref() != Some(&merged) {
        if let Some(e) = managed.get_mut(&id) {
            e.time = Some(now);
        }
    }
    finish(managed, &mut merged);
    Ok(merged)
}

/// managedFields bookkeeping for a create, update or non-apply patch by
/// `writer`: `old` is the stored object (`Value::Null` on create), `new`
/// the object about to be stored. The writer's Update entry gains the
/// fields that were added or changed; every entry loses fields that were
/// changed by the writer or removed. A client may replace managedFields
/// wholesale (`[]` or `[{}]` clears them); writes that drop them keep the
/// stored ones; writes through a subresource always keep the stored ones.
pub fn record_update(old: &Value, new: &Value, writer: &Writer, schema: &dyn ApplySchema) -> Value {
    record_update_owned(old, new.clone(), writer, schema)
}

/// [`record_update`] of an object the caller gives up: the API server's
/// writes have no further use for it, and copying every created or
/// updated object showed in profiles.
pub fn record_update_owned(
    old: &Value,
    new: Value,
    writer: &Writer,
    schema: &dyn ApplySchema,
) -> Value {
    let mut out = new;
    if !out.is_object() {
        return out;
    }
    let managed = if writer.subresource.is_some() {
        managed::decode(old)
    } else if managed::is_reset(&out) {
        Ok(Managed::new())
    } else {
        match managed::decode(&out) {
            Ok(m) if !m.is_empty() => Ok(m),
            _ => managed::decode(old),
        }
    };
    let mut managed = managed.unwrap_or_default();
    managed::strip(&mut out);
    let reset = schema.reset_fields(writer.subresource);
    let cmp = compare(stripped(old).as_ref(), Some(&out), schema).filter(&reset);
    let api_version = text(&out, &["apiVersion"]).to_owned();
    let id = ManagerId::update(writer.manager, &api_version, writer.subresource);
    track_update(
        &mut managed,
        &cmp,
        id,
        &api_version,
        &format_time(&writer.now),
    );
    finish(managed, &mut out);
    out
}

/// Moves ownership of what `cmp` added or changed to `id`, and drops
/// removed fields from everyone.
fn track_update(
    managed: &mut Managed,
    cmp: &Comparison,
    id: ManagerId,
    api_version: &str,
    now: &str,
) {
    let gained = cmp.added.union(&cmp.modified);
    for entry in managed.values_mut() {
        entry.set = entry.set.difference(&gained).difference(&cmp.removed);
    }
    if gained.is_empty() {
        return;
    }
    let entry = managed.entry(id).or_insert_with(|| Entry {
        set: FieldSet::new(),
        api_version: api_version.to_owned(),
        time: None,
    });
    entry.set = entry.set.union(&gained);
    entry.api_version = api_version.to_owned();
    entry.time = Some(now.to_owned());
}

fn finish(mut managed: Managed, obj: &mut Value) {
    let strip = typed::stripped_set();
    for entry in managed.values_mut() {
        entry.set = entry.set.difference(strip);
    }
    managed.retain(|_, e| !e.set.is_empty());
    cap_update_managers(&mut managed, MAX_UPDATE_MANAGERS);
    encode_managed_fields(&managed, obj);
}
