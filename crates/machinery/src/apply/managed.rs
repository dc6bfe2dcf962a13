//! `metadata.managedFields`: decoding, encoding, ordering and capping.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/util/managedfields/
//! internal` (`managedfields.go`, `capmanagers.go`) and the field manager
//! name defaulting of `apiserver/pkg/endpoints/handlers/rest.go`. An
//! entry is identified by manager, operation, subresource and, for
//! updates only, apiVersion: an applier keeps one entry whatever version
//! it applies with, while `kubectl edit` through apps/v1 and through
//! apps/v1beta1 would keep two.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::set::{FieldSet, FieldsV1Error};
use crate::field::{FieldError, FieldPath};

/// Update managers beyond this many are merged, oldest first, into
/// `ancient-changes` entries (upstream `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Longest field manager name the API accepts.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns a set of fields.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers (see the module docs).
    pub api_version: String,
    /// Empty for the main resource.
    pub subresource: String,
}

impl ManagerId {
    pub fn apply(manager: &str, subresource: Option<&str>) -> Self {
        ManagerId {
            manager: manager.to_owned(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: subresource.unwrap_or("").to_owned(),
        }
    }

    pub fn update(manager: &str, api_version: &str, subresource: Option<&str>) -> Self {
        ManagerId {
            manager: manager.to_owned(),
            operation: Operation::Update,
            api_version: api_version.to_owned(),
            subresource: subresource.unwrap_or("").to_owned(),
        }
    }

    /// How conflicts name the manager (upstream `printManager`):
    /// `"kubectl-edit" using apps/v1`, `"helm"`, `"x" with subresource
    /// "status"`.
    pub fn describe(&self) -> String {
        let mut s = crate::quote::go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s.push_str(" with subresource ");
            s.push_str(&crate::quote::go_quote(&self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(" using ");
            s.push_str(&self.api_version);
        }
        s
    }
}

/// One manager's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub set: FieldSet,
    pub api_version: String,
    /// `metav1.Time` text; absent when the entry never changed the object.
    pub time: Option<String>,
}

/// All entries of an object.
pub type Managed = BTreeMap<ManagerId, Entry>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("metadata.managedFields must be a list")]
    NotAList,
    #[error("managed fields entry {0} is not an object")]
    NotAnObject(usize),
    #[error("operation must be `Apply` or `Update`")]
    Operation,
    #[error("apiVersion must not be empty")]
    ApiVersion,
    #[error("missing fieldsType in managed fields entry {0}")]
    MissingFieldsType(usize),
    #[error("invalid fieldsType {1:?} in managed fields entry {0}")]
    FieldsType(usize, String),
    #[error("error decoding versioned set of managed fields entry {index}: {source}")]
    FieldsV1 {
        index: usize,
        #[source]
        source: FieldsV1Error,
    },
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

/// Decodes an object's managedFields. Absent or null is empty.
pub fn decode(obj: &Value) -> Result<Managed, DecodeError> {
    let mut out = Managed::new();
    let entries = match managed_fields(obj) {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(DecodeError::NotAList),
    };
    for (i, e) in entries.iter().enumerate() {
        let Value::Object(e) = e else {
            return Err(DecodeError::NotAnObject(i));
        };
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err(DecodeError::Operation),
        };
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err(DecodeError::ApiVersion);
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(DecodeError::MissingFieldsType(i)),
            other => return Err(DecodeError::FieldsType(i, other.to_owned())),
        }
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => FieldSet::from_fields_v1(v)
                .map_err(|source| DecodeError::FieldsV1 { index: i, source })?,
        };
        let subresource = Some(text("subresource")).filter(|s| !s.is_empty());
        let id = match operation {
            Operation::Apply => ManagerId::apply(text("manager"), subresource),
            Operation::Update => ManagerId::update(text("manager"), api_version, subresource),
        };
        let time = e.get("time").and_then(Value::as_str).map(str::to_owned);
        out.insert(
            id,
            Entry {
                set,
                api_version: api_version.to_owned(),
                time,
            },
        );
    }
    Ok(out)
}

/// Whether a write asks to clear managedFields: `[]` or `[{}]`.
pub fn is_reset(obj: &Value) -> bool {
    match managed_fields(obj) {
        Some(Value::Array(a)) => {
            a.is_empty() || (a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty))
        }
        _ => false,
    }
}

/// Removes metadata.managedFields.
pub fn strip(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.remove("managedFields");
    }
}

/// Writes `managed` into `obj`'s metadata in upstream's order: appliers
/// before updaters, then oldest first, then by manager, apiVersion and
/// subresource. No entries means no managedFields.
pub fn encode(managed: &Managed, obj: &mut Value) {
    let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
        return;
    };
    let mut entries: Vec<(&ManagerId, &Entry)> =
        managed.iter().filter(|(_, e)| !e.set.is_empty()).collect();
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    entries.sort_by(|(a, ea), (b, eb)| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| seconds(&ea.time).cmp(&seconds(&eb.time)))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| ea.api_version.cmp(&eb.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let list = entries
        .into_iter()
        .map(|(id, e)| {
            let mut m = Map::new();
            if !id.manager.is_empty() {
                m.insert("manager".into(), id.manager.clone().into());
            }
            m.insert("operation".into(), id.operation.as_str().into());
            m.insert("apiVersion".into(), e.api_version.clone().into());
            if let Some(t) = &e.time {
                m.insert("time".into(), t.clone().into());
            }
            m.insert("fieldsType".into(), "FieldsV1".into());
            m.insert("fieldsV1".into(), e.set.to_fields_v1());
            if !id.subresource.is_empty() {
                m.insert("subresource".into(), id.subresource.clone().into());
            }
            Value::Object(m)
        })
        .collect();
    meta.insert("managedFields".into(), Value::Array(list));
}

fn seconds(t: &Option<String>) -> i64 {
    t.as_deref()
        .and_then(|t| crate::time::parse_time(t).ok())
        .map_or(0, |t| t.timestamp())
}

/// Merges the oldest update entries into `ancient-changes` until at most
/// `max` update entries remain (upstream `capManagersManager`).
pub fn cap_update_managers(managed: &mut Managed, max: usize) {
    let mut updaters: Vec<ManagerId> = managed
        .keys()
        .filter(|id| id.operation == Operation::Update)
        .cloned()
        .collect();
    if updaters.len() <= max {
        return;
    }
    updaters.sort_by(|a, b| {
        seconds(&managed[a].time)
            .cmp(&seconds(&managed[b].time))
            .then_with(|| a.cmp(b))
    });
    // The oldest entry of each version waits; when a second one of the
    // same version must go, both land in that version's bucket.
    let mut first_of_version: HashMap<String, ManagerId> = HashMap::new();
    let mut count = updaters.len();
    for id in updaters {
        if count <= max {
            break;
        }
        let Some(version) = managed.get(&id).map(|e| e.api_version.clone()) else {
            continue;
        };
        let bucket = ManagerId::update(ANCIENT_CHANGES, &version, None);
        let Some(first) = first_of_version.get(&version) else {
            first_of_version.insert(version, id);
            continue;
        };
        if id == bucket {
            continue;
        }
        if !managed.contains_key(&bucket) {
            if let Some(moved) = managed.remove(first) {
                managed.insert(bucket.clone(), moved);
            }
        }
        let Some(entry) = managed.remove(&id) else {
            continue;
        };
        let b = managed.entry(bucket).or_insert_with(|| Entry {
            set: FieldSet::new(),
            api_version: version,
            time: None,
        });
        b.set = b.set.union(&entry.set);
        // The merged update is the newer one.
        b.time = entry.time;
        count -= 1;
    }
}

/// The field manager of a write: the `fieldManager` query parameter, or
/// else the user agent up to its first `/`, printable characters only,
/// at most 128 bytes (`kubectl/v1.29.0 (linux/amd64) ...` → `kubectl`).
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_owned();
    }
    let mut out = String::new();
    for c in user_agent.split('/').next().unwrap_or("").chars() {
        if !is_print(c) {
            continue;
        }
        if out.len() >= FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

fn is_print(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace())
}

/// Checks the `fieldManager` and `force` query parameters of a PATCH as
/// upstream's `ValidatePatchOptions` does: apply needs a manager, only
/// apply takes `force`, names are printable and at most 128 bytes. The
/// API server reports errors as 422 on `PatchOptions.meta.k8s.io ""`.
pub fn validate_patch_options(
    apply: bool,
    field_manager: &str,
    force: Option<bool>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !apply && force.is_some() {
        errs.push(FieldError::forbidden(
            &FieldPath::new("force"),
            "may not be specified for non-apply patch",
        ));
    }
    if apply && field_manager.is_empty() {
        errs.push(FieldError::required(
            &FieldPath::new("fieldManager"),
            "is required for apply patch",
        ));
    }
    errs.extend(validate_field_manager(field_manager));
    errs
}

/// Length and character checks of a field manager name (upstream
/// `ValidateFieldManager`).
pub fn validate_field_manager(field_manager: &str) -> Vec<FieldError> {
    let path = FieldPath::new("fieldManager");
    let mut errs = Vec::new();
    if field_manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errs.push(FieldError::too_long(&path, Some(FIELD_MANAGER_MAX_LENGTH)));
    }
    for (i, c) in field_manager.char_indices() {
        if !is_print(c) {
            errs.push(FieldError::invalid(
                &path,
                field_manager,
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    errs
}
