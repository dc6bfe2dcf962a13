//! Field-level validation errors and the paths that name the field.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/util/validation/field`
//! (`Path`, `Error`, `ErrorList`). The rendered messages are part of the API:
//! kubectl prints them verbatim (`spec.containers[0].image: Required value`),
//! and they become the `causes` of an `Invalid` Status, so the wording and
//! the value formatting follow upstream exactly.

use std::fmt;

use serde_json::Value;

use crate::quote::go_quote;

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
    Key(String),
}

/// The path of a field inside an object, rendered the way Kubernetes
/// reports it: `spec.containers[0].image`, `metadata.labels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// A path starting at the field `name` (`FieldPath::new("spec")`).
    pub fn new(name: impl Into<String>) -> Self {
        FieldPath {
            segments: vec![Segment::Field(name.into())],
        }
    }

    /// The empty path; renders as `""`.
    pub fn root() -> Self {
        FieldPath::default()
    }

    /// Builds a path from dotted field names, e.g. `"metadata.name"`.
    pub fn from_dotted(path: &str) -> Self {
        let mut p = FieldPath::root();
        for part in path.split('.').filter(|p| !p.is_empty()) {
            p = p.child(part);
        }
        p
    }

    /// The path of a named child field.
    pub fn child(&self, name: impl Into<String>) -> Self {
        self.with(Segment::Field(name.into()))
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Self {
        self.with(Segment::Index(i))
    }

    /// The path of a map entry (`[key]`).
    pub fn key(&self, k: impl Into<String>) -> Self {
        self.with(Segment::Key(k.into()))
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    fn with(&self, s: Segment) -> Self {
        let mut segments = self.segments.clone();
        segments.push(s);
        FieldPath { segments }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            match s {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => write!(f, "[{k}]")?,
            }
        }
        Ok(())
    }
}

/// Why a field is invalid; `cause_type` is the `StatusCause.reason`
/// (`FieldValueRequired`, ...) and `description` the human text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    TooFew,
    TooShort,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    /// The machine-readable cause type carried in `StatusCause.reason`.
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::TooFew => "FieldValueTooFew",
            ErrorType::TooShort => "FieldValueTooShort",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The canonical human text for the type.
    pub fn description(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::TooFew => "Too few",
            ErrorType::TooShort => "Too short",
            ErrorType::Internal => "Internal error",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// The offending value of a [`FieldError`], kept in the shape upstream
/// prints it: strings quoted, numbers and booleans bare, anything else as
/// JSON, or left out entirely.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    Omitted,
    String(String),
    Json(Value),
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Omitted => Ok(()),
            BadValue::String(s) => f.write_str(&go_quote(s)),
            BadValue::Json(Value::String(s)) => f.write_str(&go_quote(s)),
            BadValue::Json(v) => write!(f, "{v}"),
        }
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::String(s.to_owned())
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::String(s)
    }
}

impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::String(s.clone())
    }
}

impl From<Value> for BadValue {
    fn from(v: Value) -> Self {
        BadValue::Json(v)
    }
}

impl From<&Value> for BadValue {
    fn from(v: &Value) -> Self {
        BadValue::Json(v.clone())
    }
}

macro_rules! bad_value_from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for BadValue {
            fn from(n: $t) -> Self {
                BadValue::Json(Value::from(n))
            }
        }
    )*};
}
bad_value_from_number!(i32, i64, u32, u64, usize, f64, bool);

/// One field-level validation error (`field.Error`).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub error_type: ErrorType,
    /// The rendered [`FieldPath`].
    pub field: String,
    pub bad_value: BadValue,
    pub detail: String,
}

impl FieldError {
    fn new(
        error_type: ErrorType,
        path: &FieldPath,
        bad_value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            error_type,
            field: path.to_string(),
            bad_value,
            detail: detail.into(),
        }
    }

    /// `Required value`, with an optional detail.
    pub fn required(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, path, BadValue::Omitted, detail)
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(
        path: &FieldPath,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorType::Invalid, path, value.into(), detail)
    }

    /// `Invalid value: <value>: <detail>`, reported as a type mismatch.
    pub fn type_invalid(
        path: &FieldPath,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorType::TypeInvalid, path, value.into(), detail)
    }

    /// `Not found: <value>`.
    pub fn not_found(path: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::NotFound, path, value.into(), "")
    }

    /// `Unsupported value: "Foo": supported values: "Always", "Never"`.
    pub fn not_supported<S: AsRef<str>>(
        path: &FieldPath,
        value: impl Into<BadValue>,
        supported: &[S],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s.as_ref())).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, path, value.into(), detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(path: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, path, value.into(), "")
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, path, BadValue::Omitted, detail)
    }

    /// `Too long: may not be more than N bytes`; the value is never echoed.
    pub fn too_long(path: &FieldPath, max_bytes: Option<usize>) -> Self {
        let detail = match max_bytes {
            Some(1) => "may not be more than 1 byte".to_owned(),
            Some(n) => format!("may not be more than {n} bytes"),
            None => "value is too long".to_owned(),
        };
        Self::new(ErrorType::TooLong, path, BadValue::Omitted, detail)
    }

    /// `Too many: <actual>: must have at most N items`.
    pub fn too_many(path: &FieldPath, actual: Option<usize>, max: Option<usize>) -> Self {
        let detail = match max {
            Some(1) => "must have at most 1 item".to_owned(),
            Some(n) => format!("must have at most {n} items"),
            None => "has too many items".to_owned(),
        };
        let value = actual.map_or(BadValue::Omitted, BadValue::from);
        Self::new(ErrorType::TooMany, path, value, detail)
    }

    /// `Too short: must be at least N characters`.
    pub fn too_short(
        path: &FieldPath,
        value: impl Into<BadValue>,
        min_chars: Option<usize>,
    ) -> Self {
        let detail = match min_chars {
            Some(1) => "must be at least 1 character".to_owned(),
            Some(n) => format!("must be at least {n} characters"),
            None => "value is too short".to_owned(),
        };
        Self::new(ErrorType::TooShort, path, value.into(), detail)
    }

    /// `Internal error: <detail>`.
    pub fn internal(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, path, BadValue::Omitted, detail)
    }

    /// The message without the field name (upstream `ErrorBody`); this is
    /// what goes into `StatusCause.message`.
    pub fn body(&self) -> String {
        let mut s = self.error_type.description().to_owned();
        let shows_value = !matches!(
            self.error_type,
            ErrorType::Required
                | ErrorType::Forbidden
                | ErrorType::TooLong
                | ErrorType::TooShort
                | ErrorType::Internal
        );
        if shows_value && self.bad_value != BadValue::Omitted {
            s.push_str(": ");
            s.push_str(&self.bad_value.to_string());
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Renders a list of field errors as one message, the way upstream's
/// `ErrorList.ToAggregate().Error()` does: a single error bare, several
/// deduplicated inside `[a, b]`. `None` for an empty list.
pub fn aggregate_message(errors: &[FieldError]) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let msg = e.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image() -> FieldPath {
        FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("image")
    }

    #[test]
    fn paths_render_like_upstream() {
        assert_eq!(image().to_string(), "spec.containers[0].image");
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("app")
                .to_string(),
            "metadata.labels[app]"
        );
        assert_eq!(FieldPath::root().to_string(), "");
        assert!(FieldPath::root().is_root());
        assert_eq!(
            FieldPath::from_dotted("metadata.name").to_string(),
            "metadata.name"
        );
        assert_eq!(FieldPath::root().index(2).to_string(), "[2]");
    }

    #[test]
    fn messages_match_upstream() {
        let cases = vec![
            (
                FieldError::required(&image(), ""),
                "spec.containers[0].image: Required value",
            ),
            (
                FieldError::required(&image(), "must be set"),
                "spec.containers[0].image: Required value: must be set",
            ),
            (
                FieldError::invalid(&FieldPath::new("metadata").child("name"), "Foo", "bad"),
                r#"metadata.name: Invalid value: "Foo": bad"#,
            ),
            (
                FieldError::invalid(
                    &FieldPath::new("spec").child("replicas"),
                    -1i64,
                    "must be greater than or equal to 0",
                ),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::invalid(&FieldPath::new("x"), json!(["a", "b"]), "nope"),
                r#"x: Invalid value: ["a","b"]: nope"#,
            ),
            (
                FieldError::invalid(&FieldPath::new("x"), json!(true), "d"),
                "x: Invalid value: true: d",
            ),
            (
                FieldError::not_supported(
                    &FieldPath::new("imagePullPolicy"),
                    "Foo",
                    &["Always", "IfNotPresent", "Never"],
                ),
                r#"imagePullPolicy: Unsupported value: "Foo": supported values: "Always", "IfNotPresent", "Never""#,
            ),
            (
                FieldError::not_supported::<&str>(&FieldPath::new("x"), "Foo", &[]),
                r#"x: Unsupported value: "Foo""#,
            ),
            (
                FieldError::duplicate(&FieldPath::new("ports").index(1), "http"),
                r#"ports[1]: Duplicate value: "http""#,
            ),
            (
                FieldError::forbidden(&FieldPath::new("spec"), "may not be changed"),
                "spec: Forbidden: may not be changed",
            ),
            (
                FieldError::too_long(&FieldPath::new("data"), Some(1048576)),
                "data: Too long: may not be more than 1048576 bytes",
            ),
            (
                FieldError::too_long(&FieldPath::new("data"), Some(1)),
                "data: Too long: may not be more than 1 byte",
            ),
            (
                FieldError::too_long(&FieldPath::new("data"), None),
                "data: Too long: value is too long",
            ),
            (
                FieldError::too_many(&FieldPath::new("items"), Some(3), Some(2)),
                "items: Too many: 3: must have at most 2 items",
            ),
            (
                FieldError::too_many(&FieldPath::new("items"), None, Some(1)),
                "items: Too many: must have at most 1 item",
            ),
            (
                FieldError::not_found(&FieldPath::new("secret"), "s"),
                r#"secret: Not found: "s""#,
            ),
            (
                FieldError::internal(&FieldPath::new("x"), "boom"),
                "x: Internal error: boom",
            ),
            (
                FieldError::too_short(&FieldPath::new("x"), "ab", Some(3)),
                "x: Too short: must be at least 3 characters",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn cause_types() {
        assert_eq!(ErrorType::Required.cause_type(), "FieldValueRequired");
        assert_eq!(
            ErrorType::NotSupported.cause_type(),
            "FieldValueNotSupported"
        );
        assert_eq!(ErrorType::Internal.cause_type(), "InternalError");
        assert_eq!(ErrorType::TypeInvalid.description(), "Invalid value");
    }

    #[test]
    fn aggregates_dedup_and_bracket() {
        let a = FieldError::required(&FieldPath::new("a"), "");
        let b = FieldError::required(&FieldPath::new("b"), "");
        assert_eq!(aggregate_message(&[]), None);
        assert_eq!(
            aggregate_message(std::slice::from_ref(&a)).unwrap(),
            "a: Required value"
        );
        assert_eq!(
            aggregate_message(&[a.clone(), b, a]).unwrap(),
            "[a: Required value, b: Required value]"
        );
    }
}
