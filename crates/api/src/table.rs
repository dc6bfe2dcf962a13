//! Server-side table printing: the columns and row cells `kubectl get` shows
//! for each built-in kind when it asks for `as=Table`.
//!
//! Upstream counterpart: pkg/printers/internalversion/printers.go (column
//! definitions and one print function per kind), the generic registry's
//! default table convertor (apiserver/pkg/registry/rest/table.go) for kinds
//! without a printer, and apimachinery's `duration.HumanDuration` for ages.
//!
//! The API server always prints with `Wide: true` and lets the client hide
//! columns of priority 1, so every row carries every column. Rows take the
//! stored object as JSON and the current time as a parameter; each printer
//! decodes into the k8s-openapi type, so a malformed object is an error, not
//! a panic.

mod cluster;
mod core;
mod duration;
mod format;
mod pod;
mod workloads;

pub use duration::human_duration;

use crate::schemas;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One `TableColumnDefinition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub column_type: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default output, 1 for columns only `-o wide` shows.
    pub priority: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot print {kind}: object does not decode")]
    Decode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

type RowFn = fn(&Value, Timestamp) -> Result<Vec<Value>, TableError>;

/// The columns and row function of one kind.
pub struct Printer {
    columns: fn() -> Vec<Column>,
    row: RowFn,
}

impl Printer {
    pub fn columns(&self) -> Vec<Column> {
        (self.columns)()
    }

    /// The cells of `object`'s row, one per column, as of `now`.
    pub fn row(&self, object: &Value, now: Timestamp) -> Result<Vec<Value>, TableError> {
        (self.row)(object, now)
    }
}

/// The printer kube-apiserver uses for `kind` of `group` (any version: the
/// upstream printers work on the internal type), or the default
/// Name / Created At printer for kinds without one (Role, LimitRange, CRD...).
pub fn printer(group: &str, kind: &str) -> &'static Printer {
    workloads::printer(group, kind)
        .or_else(|| core::printer(group, kind))
        .or_else(|| cluster::printer(group, kind))
        .or_else(|| pod::printer(group, kind))
        .unwrap_or(&DEFAULT)
}

/// The `conditions` of a table row: upstream marks finished pods with a
/// `Completed` condition (reason `Succeeded` or `Failed`) so clients can tell
/// them apart; every other row has none.
pub fn row_conditions(group: &str, kind: &str, object: &Value) -> Vec<Value> {
    if group.is_empty() && kind == "Pod" {
        pod::row_conditions(object)
    } else {
        Vec::new()
    }
}

/// Shorthand for `printer(group, kind).columns()`.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    printer(group, kind).columns()
}

/// Shorthand for `printer(group, kind).row(object, now)`.
pub fn row(
    group: &str,
    kind: &str,
    object: &Value,
    now: Timestamp,
) -> Result<Vec<Value>, TableError> {
    printer(group, kind).row(object, now)
}

/// The generic registry's convertor: name and RFC 3339 creation time.
pub static DEFAULT: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            Column {
                name: "Created At",
                column_type: "date",
                format: "",
                description: meta_doc("creationTimestamp"),
                priority: 0,
            },
        ]
    },
    row: |object, _now| {
        let meta: ObjectMeta = match object.get("metadata") {
            Some(m) => decode("object", m)?,
            None => ObjectMeta::default(),
        };
        let created = meta
            .creation_timestamp
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned());
        Ok(vec![meta.name.unwrap_or_default().into(), created.into()])
    },
};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// A column whose description is the schema's doc for `type_name.field`,
/// as upstream takes it from `SwaggerDoc()`.
fn column(name: &'static str, column_type: &'static str, description: &'static str) -> Column {
    Column {
        name,
        column_type,
        format: "",
        description,
        priority: 0,
    }
}

fn wide(mut c: Column) -> Column {
    c.priority = 1;
    c
}

/// The documentation of a field, or "" if the schema lacks it.
fn doc(type_name: &str, field: &str) -> &'static str {
    schemas::field_description(type_name, field).unwrap_or("")
}

fn meta_doc(field: &str) -> &'static str {
    doc(OBJECT_META, field)
}

fn name_column() -> Column {
    Column {
        format: "name",
        ..column("Name", "string", meta_doc("name"))
    }
}

fn age_column() -> Column {
    column("Age", "string", meta_doc("creationTimestamp"))
}

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

fn containers_columns() -> [Column; 2] {
    [
        wide(column("Containers", "string", CONTAINERS_DOC)),
        wide(column("Images", "string", IMAGES_DOC)),
    ]
}

fn decode<T: DeserializeOwned>(kind: &'static str, object: &Value) -> Result<T, TableError> {
    T::deserialize(object).map_err(|source| TableError::Decode { kind, source })
}

/// Elapsed time since `t` in upstream's human format, `<unknown>` if unset.
fn since(t: Option<&Time>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(now.duration_since(t.0)),
        None => "<unknown>".to_owned(),
    }
}

fn age(meta: &ObjectMeta, now: Timestamp) -> Value {
    since(meta.creation_timestamp.as_ref(), now).into()
}

fn name(meta: &ObjectMeta) -> Value {
    meta.name.clone().unwrap_or_default().into()
}

fn or_none(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => "<none>".to_owned(),
    }
}

#[cfg(test)]
mod tests;
