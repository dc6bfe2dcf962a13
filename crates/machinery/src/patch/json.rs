//! JSON patch (RFC 6902) with JSON pointers (RFC 6901).
//!
//! Upstream counterpart: `jsonpatch.DecodePatch` / `Patch.Apply` from
//! `github.com/evanphx/json-patch`, used by kube-apiserver for
//! `application/json-patch+json`. Written here rather than taken from the
//! `json-patch` crate so errors read the way we want and no panic path
//! exists. The patch applies atomically: on any error the input is untouched
//! and nothing is returned.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The patch document itself is malformed.
    #[error("invalid JSON patch: {0}")]
    Malformed(String),
    /// A pointer that is not RFC 6901 syntax.
    #[error("invalid JSON pointer {pointer:?}: {reason}")]
    BadPointer { pointer: String, reason: String },
    /// An operation whose target does not exist or cannot take the value.
    #[error("{op} operation does not apply: {reason}: {path:?}")]
    NotApplicable {
        op: &'static str,
        path: String,
        reason: String,
    },
    /// A `test` operation whose value differs.
    #[error("testing value {path:?} failed: test failed")]
    TestFailed { path: String },
}

/// One decoded operation.
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
    Move { from: String, path: String },
    Copy { from: String, path: String },
    Test { path: String, value: Value },
}

fn decode(patch: &Value) -> Result<Vec<Op>, Error> {
    let ops = patch
        .as_array()
        .ok_or_else(|| Error::Malformed("a JSON patch must be a list of operations".into()))?;
    ops.iter()
        .enumerate()
        .map(|(i, op)| decode_op(i, op))
        .collect()
}

fn decode_op(i: usize, op: &Value) -> Result<Op, Error> {
    let obj = op
        .as_object()
        .ok_or_else(|| Error::Malformed(format!("operation {i} is not an object")))?;
    let string = |name: &str| -> Result<String, Error> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::Malformed(format!(
                "operation {i}: {name:?} must be a string"
            ))),
            None => Err(Error::Malformed(format!("operation {i}: missing {name:?}"))),
        }
    };
    // An explicit null is a value; only absence is an error.
    let value = || {
        obj.get("value")
            .cloned()
            .ok_or_else(|| Error::Malformed(format!("operation {i}: missing \"value\"")))
    };
    Ok(match string("op")?.as_str() {
        "add" => Op::Add {
            path: string("path")?,
            value: value()?,
        },
        "remove" => Op::Remove {
            path: string("path")?,
        },
        "replace" => Op::Replace {
            path: string("path")?,
            value: value()?,
        },
        "move" => Op::Move {
            from: string("from")?,
            path: string("path")?,
        },
        "copy" => Op::Copy {
            from: string("from")?,
            path: string("path")?,
        },
        "test" => Op::Test {
            path: string("path")?,
            value: value()?,
        },
        other => {
            return Err(Error::Malformed(format!(
                "operation {i}: unknown op {other:?}"
            )))
        }
    })
}

/// Splits a pointer into unescaped reference tokens.
fn tokens(pointer: &str) -> Result<Vec<String>, Error> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |reason: &str| Error::BadPointer {
        pointer: pointer.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| bad("must start with '/'"))?;
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return Err(bad("'~' must be followed by '0' or '1'")),
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: decimal, no leading zeros (RFC 6901 section 4).
fn array_index(token: &str) -> Option<usize> {
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    valid.then(|| token.parse().ok()).flatten()
}

fn not_applicable(op: &'static str, path: &str, reason: impl Into<String>) -> Error {
    Error::NotApplicable {
        op,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn get<'a>(doc: &'a Value, toks: &[String]) -> Option<&'a Value> {
    toks.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => array_index(t).and_then(|i| a.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    toks.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get_mut(t),
        Value::Array(a) => array_index(t).and_then(move |i| a.get_mut(i)),
        _ => None,
    })
}

fn add(doc: &mut Value, path: &str, value: Value, op: &'static str) -> Result<(), Error> {
    let toks = tokens(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent) {
        Some(Value::Object(m)) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                array_index(last)
                    .filter(|&i| i <= a.len())
                    .ok_or_else(|| not_applicable(op, path, "index out of bounds"))?
            };
            a.insert(i, value);
            Ok(())
        }
        Some(_) => Err(not_applicable(op, path, "parent is not a container")),
        None => Err(not_applicable(op, path, "doc is missing path")),
    }
}

fn remove(doc: &mut Value, path: &str, op: &'static str) -> Result<Value, Error> {
    let toks = tokens(path)?;
    let Some((last, parent)) = toks.split_last() else {
        return Err(not_applicable(op, path, "cannot remove the whole document"));
    };
    let removed = match get_mut(doc, parent) {
        Some(Value::Object(m)) => super::remove_key(m, last),
        Some(Value::Array(a)) => array_index(last)
            .filter(|&i| i < a.len())
            .map(|i| a.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| not_applicable(op, path, "doc is missing path"))
}

/// Equality as RFC 6902 `test` defines it: numbers compare by value
/// (`1` equals `1.0`), objects ignore member order.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn apply_op(doc: &mut Value, op: Op) -> Result<(), Error> {
    match op {
        Op::Add { path, value } => add(doc, &path, value, "add"),
        Op::Remove { path } => remove(doc, &path, "remove").map(drop),
        Op::Replace { path, value } => {
            let toks = tokens(&path)?;
            let target = get_mut(doc, &toks)
                .ok_or_else(|| not_applicable("replace", &path, "doc is missing path"))?;
            *target = value;
            Ok(())
        }
        Op::Move { from, path } => {
            if from == path {
                // Still the source must exist.
                return get(doc, &tokens(&from)?)
                    .map(drop)
                    .ok_or_else(|| not_applicable("move", &from, "doc is missing from path"));
            }
            if path.starts_with(&format!("{from}/")) {
                return Err(not_applicable(
                    "move",
                    &path,
                    "a value cannot be moved into one of its children",
                ));
            }
            let value = remove(doc, &from, "move")?;
            add(doc, &path, value, "move")
        }
        Op::Copy { from, path } => {
            let value = get(doc, &tokens(&from)?)
                .cloned()
                .ok_or_else(|| not_applicable("copy", &from, "doc is missing from path"))?;
            add(doc, &path, value, "copy")
        }
        Op::Test { path, value } => match get(doc, &tokens(&path)?) {
            Some(actual) if json_equal(actual, &value) => Ok(()),
            _ => Err(Error::TestFailed { path }),
        },
    }
}

/// Applies a JSON patch (a list of operations) to `doc`, returning the
/// patched copy.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, Error> {
    let ops = decode(patch)?;
    let mut out = doc.clone();
    for op in ops {
        apply_op(&mut out, op)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
