//! Label selectors: parsing, matching, canonical rendering.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/labels` (`Parse`,
//! `Requirement`, `Selector`) and `metav1.LabelSelectorAsSelector`. The same
//! [`Selector`] comes out of a `?labelSelector=` string and out of a
//! `metav1.LabelSelector` object (`spec.selector` of workloads), so list
//! filtering and controllers agree on what matches.

mod parser;
pub mod validation;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::{Map, Value};

use crate::field::{aggregate_message, FieldError, FieldPath};
use crate::quote::go_quote;

pub use validation::{is_label_key, is_label_value, is_qualified_name};

/// Why a selector could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The selector string is not well formed (`found ',', expected: ...`).
    #[error("{0}")]
    Syntax(String),
    /// One requirement is malformed or names an invalid key or value; the
    /// message is upstream's `unable to parse requirement: ...`.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A requirement built from parts (e.g. a `matchExpressions` entry)
    /// violates the rules for its operator, key or values.
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions` operator outside In/NotIn/Exists/DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    UnknownOperator(String),
    /// A `metav1.LabelSelector` whose JSON has the wrong shape.
    #[error("invalid label selector: {0}")]
    Malformed(String),
}

/// The relation a [`Requirement`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// The operator's name in upstream's `selection.Operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// A source of labels to match against.
pub trait Labels {
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

/// `metadata.labels` as stored JSON; non-string values count as absent.
impl Labels for Map<String, Value> {
    fn get(&self, key: &str) -> Option<&str> {
        Map::get(self, key).and_then(Value::as_str)
    }
}

/// One clause of a selector: `key op values`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds and validates a requirement (upstream `NewRequirement`);
    /// field paths in errors start at `path` (`key`, `values[0][app]`).
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
        path: &FieldPath,
    ) -> Result<Self, Error> {
        let mut errs = Vec::new();
        let key_errs = is_label_key(key);
        if !key_errs.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("key"),
                key,
                key_errs.join("; "),
            ));
        }
        let values_path = path.child("values");
        let values_json = || {
            if values.is_empty() {
                // Upstream reports a nil Go slice, which encodes as null.
                Value::Null
            } else {
                Value::from(values.clone())
            }
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(FieldError::invalid(
                &values_path,
                values_json(),
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(FieldError::invalid(
                    &values_path,
                    values_json(),
                    "exact-match compatibility requires one single value",
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(FieldError::invalid(
                    &values_path,
                    values_json(),
                    "values set must be empty for exists and does not exist",
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        &values_path,
                        values_json(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            &values_path.index(i),
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = is_label_value(v);
            if !value_errs.is_empty() {
                errs.push(FieldError::invalid(
                    &values_path.index(i).key(key),
                    v,
                    value_errs.join("; "),
                ));
            }
        }
        match aggregate_message(&errs) {
            Some(msg) => Err(Error::InvalidRequirement(msg)),
            None => Ok(Requirement {
                key: key.to_owned(),
                operator,
                values,
            }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &dyn Labels) -> bool {
        let value = labels.get(&self.key);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), [want]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(have), Ok(want)) = (have.parse::<i64>(), want.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in (",
            Operator::NotIn => " notin (",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: all requirements must hold. `Nothing` (from a null
/// `metav1.LabelSelector`) matches no object at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Nothing,
    All(Vec<Requirement>),
}

impl Default for Selector {
    fn default() -> Self {
        Selector::everything()
    }
}

impl Selector {
    /// Matches every object (the empty selector).
    pub fn everything() -> Self {
        Selector::All(Vec::new())
    }

    /// Matches no object.
    pub fn nothing() -> Self {
        Selector::Nothing
    }

    /// Parses the `?labelSelector=` syntax: `a=b,c!=d,e in (f,g),h,!i`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut reqs = parser::parse(s)?;
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector::All(reqs))
    }

    /// A selector requiring exactly these labels (`matchLabels`, or a
    /// Service's `spec.selector`); keys and values are validated.
    pub fn from_map<'a>(
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Error> {
        let mut reqs = Vec::new();
        for (k, v) in labels {
            reqs.push(Requirement::new(
                k,
                Operator::Equals,
                vec![v.to_owned()],
                &FieldPath::root(),
            )?);
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector::All(reqs))
    }

    /// Converts a `metav1.LabelSelector` object (upstream
    /// `LabelSelectorAsSelector`): `None`/null selects nothing, `{}` selects
    /// everything.
    pub fn from_label_selector(selector: Option<&Value>) -> Result<Self, Error> {
        let obj = match selector {
            None | Some(Value::Null) => return Ok(Selector::Nothing),
            Some(Value::Object(o)) => o,
            Some(other) => {
                return Err(Error::Malformed(format!("expected an object, got {other}")))
            }
        };
        let mut reqs = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| {
                        Error::Malformed(format!("matchLabels[{k}] must be a string, got {v}"))
                    })?;
                    reqs.push(Requirement::new(
                        k,
                        Operator::Equals,
                        vec![v.to_owned()],
                        &FieldPath::root(),
                    )?);
                }
            }
            Some(other) => {
                return Err(Error::Malformed(format!(
                    "matchLabels must be an object, got {other}"
                )))
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, e) in exprs.iter().enumerate() {
                    reqs.push(expression_requirement(i, e)?);
                }
            }
            Some(other) => {
                return Err(Error::Malformed(format!(
                    "matchExpressions must be a list, got {other}"
                )))
            }
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector::All(reqs))
    }

    /// Whether this selector places no restriction (matches everything).
    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::All(r) if r.is_empty())
    }

    pub fn requirements(&self) -> &[Requirement] {
        match self {
            Selector::Nothing => &[],
            Selector::All(r) => r,
        }
    }

    pub fn matches(&self, labels: &dyn Labels) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::All(reqs) => reqs.iter().all(|r| r.matches(labels)),
        }
    }

    /// Matches an object by its `metadata.labels` (absent labels = none).
    pub fn matches_object(&self, object: &Value) -> bool {
        let empty = Map::new();
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.matches(labels)
    }

    /// If the selector pins `key` to one value (`key=v`, `key in (v)`),
    /// that value; lets a caller narrow a scan (upstream
    /// `RequiresExactMatch`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements().iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

fn expression_requirement(i: usize, e: &Value) -> Result<Requirement, Error> {
    let malformed = |what: &str| Error::Malformed(format!("matchExpressions[{i}]: {what}"));
    let e = e
        .as_object()
        .ok_or_else(|| malformed("must be an object"))?;
    let key = match e.get("key") {
        Some(Value::String(k)) => k.as_str(),
        None | Some(Value::Null) => "",
        Some(_) => return Err(malformed("key must be a string")),
    };
    let op = match e.get("operator") {
        Some(Value::String(op)) => op.as_str(),
        None | Some(Value::Null) => "",
        Some(_) => return Err(malformed("operator must be a string")),
    };
    let operator = match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(Error::UnknownOperator(other.to_owned())),
    };
    let values = match e.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("values must be strings"))?,
        Some(_) => return Err(malformed("values must be a list")),
    };
    Requirement::new(key, operator, values, &FieldPath::root())
}

impl fmt::Display for Selector {
    /// The canonical form: requirements sorted by key, values sorted, joined
    /// by commas; `Nothing` renders empty like upstream.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
