//! A small subset of CEL for webhooks' `matchConditions`: enough for the
//! conditions people write to skip objects by name, namespace, label or
//! user — `object.metadata.name != 'skip-me'`, `has(object.metadata.
//! labels) && 'x' in object.metadata.labels`, `request.userInfo.username
//! in ['a', 'b']`, `!object.metadata.name.startsWith('kube-')`.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/admission/plugin/webhook/
//! matchconditions` over cel-go. Supported: literals (strings, integers,
//! booleans, null, lists), the variables `object`, `oldObject` and
//! `request`, field selection and indexing, `has()`, `size()`, the
//! methods `startsWith`, `endsWith`, `contains`, `size`, the operators
//! `! - + == != < <= > >= in && || ?:`. Anything else (`authorizer`,
//! regular expressions, macros such as `all`/`exists`) is an evaluation
//! error, which the webhook's failurePolicy then decides, as for any
//! condition upstream cannot evaluate.

use serde_json::{Map, Value};

/// Why a condition could not be evaluated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("syntax error at {at}: {what}")]
    Syntax { at: usize, what: String },
    #[error("no such key: {0}")]
    NoSuchKey(String),
    #[error("undeclared reference to '{0}'")]
    Undeclared(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("no matching overload for '{0}'")]
    Overload(String),
    #[error("expression did not evaluate to a bool")]
    NotBool,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(&'static str),
}

const OPS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",", "-", "+", "?",
    ":",
];

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, Error> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(Error::Syntax {
                            at: start,
                            what: "unterminated string".into(),
                        })
                    }
                    Some('\\') => {
                        let esc = chars.get(i + 1).copied().unwrap_or('\\');
                        s.push(match esc {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Str(s)));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text.parse().map_err(|_| Error::Syntax {
                at: start,
                what: format!("bad number {text}"),
            })?;
            out.push((start, Tok::Int(n)));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((start, Tok::Ident(chars[start..i].iter().collect())));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(*op)) else {
                return Err(Error::Syntax {
                    at: i,
                    what: format!("unexpected {c:?}"),
                });
            };
            out.push((i, Tok::Op(op)));
            i += op.len();
        }
    }
    Ok(out)
}

/// A parsed expression.
#[derive(Clone, Debug)]
enum Expr {
    Lit(Value),
    Var(String),
    List(Vec<Expr>),
    Field(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(Option<Box<Expr>>, String, Vec<Expr>),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|(a, _)| *a)
            .unwrap_or(usize::MAX)
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), Error> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(Error::Syntax {
                at: self.at(),
                what: format!("expected {op:?}"),
            })
        }
    }

    fn expr(&mut self) -> Result<Expr, Error> {
        let cond = self.binary(0)?;
        if self.eat("?") {
            let yes = self.expr()?;
            self.expect(":")?;
            let no = self.expr()?;
            return Ok(Expr::Cond(Box::new(cond), Box::new(yes), Box::new(no)));
        }
        Ok(cond)
    }

    /// Binary operators by precedence level, lowest first.
    fn binary(&mut self, level: usize) -> Result<Expr, Error> {
        const LEVELS: &[&[&str]] = &[
            &["||"],
            &["&&"],
            &["==", "!=", "<", "<=", ">", ">=", "in"],
            &["+", "-"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(o)) if LEVELS[level].contains(o) => *o,
                Some(Tok::Ident(i)) if i == "in" && LEVELS[level].contains(&"in") => "in",
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.binary(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, Error> {
        if self.eat("!") {
            return Ok(Expr::Unary("!", Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Ok(Expr::Unary("-", Box::new(self.unary()?)));
        }
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Tok::Ident(name)) = self.peek().cloned() else {
                    return Err(Error::Syntax {
                        at: self.at(),
                        what: "expected a field name".into(),
                    });
                };
                self.pos += 1;
                if self.eat("(") {
                    let args = self.args(")")?;
                    e = Expr::Call(Some(Box::new(e)), name, args);
                } else {
                    e = Expr::Field(Box::new(e), name);
                }
            } else if self.eat("[") {
                let idx = self.expr()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else {
                return Ok(e);
            }
        }
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, Error> {
        let mut args = Vec::new();
        if self.eat(close) {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(close) {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        let at = self.at();
        let Some(tok) = self.peek().cloned() else {
            return Err(Error::Syntax {
                at,
                what: "unexpected end".into(),
            });
        };
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::Int(n) => Ok(Expr::Lit(Value::from(n))),
            Tok::Ident(id) => match id.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                _ if self.eat("(") => Ok(Expr::Call(None, id, self.args(")")?)),
                _ => Ok(Expr::Var(id)),
            },
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Op("[") => Ok(Expr::List(self.args("]")?)),
            Tok::Op(op) => Err(Error::Syntax {
                at,
                what: format!("unexpected {op:?}"),
            }),
        }
    }
}

/// Parse a condition (also how a configuration's conditions could be
/// checked when written).
fn parse(src: &str) -> Result<Expr, Error> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let e = p.expr()?;
    if p.pos != p.toks.len() {
        return Err(Error::Syntax {
            at: p.at(),
            what: "unexpected trailing input".into(),
        });
    }
    Ok(e)
}

/// Evaluate a condition over the variables (`object`, `oldObject`,
/// `request`); it must yield a bool.
pub fn eval_bool(src: &str, vars: &Map<String, Value>) -> Result<bool, Error> {
    match eval(&parse(src)?, vars)? {
        Value::Bool(b) => Ok(b),
        _ => Err(Error::NotBool),
    }
}

fn eval(e: &Expr, vars: &Map<String, Value>) -> Result<Value, Error> {
    match e {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Var(name) => vars
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Undeclared(name.clone())),
        Expr::List(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| eval(i, vars))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Field(base, name) => field(&eval(base, vars)?, name),
        Expr::Index(base, idx) => {
            let (base, idx) = (eval(base, vars)?, eval(idx, vars)?);
            match (&base, &idx) {
                (Value::Object(_), Value::String(k)) => field(&base, k),
                (Value::Array(a), Value::Number(n)) => n
                    .as_u64()
                    .and_then(|i| a.get(i as usize))
                    .cloned()
                    .ok_or_else(|| Error::NoSuchKey(n.to_string())),
                _ => Err(Error::Overload("_[_]".into())),
            }
        }
        Expr::Call(None, name, args) if name == "has" => {
            let [Expr::Field(base, key)] = args.as_slice() else {
                return Err(Error::Syntax {
                    at: 0,
                    what: "has() needs a field selection".into(),
                });
            };
            match eval(base, vars)? {
                Value::Object(m) => Ok(Value::Bool(m.get(key).is_some_and(|v| !v.is_null()))),
                _ => Err(Error::Overload("has".into())),
            }
        }
        Expr::Call(None, name, args) if name == "size" && args.len() == 1 => {
            size(&eval(&args[0], vars)?)
        }
        Expr::Call(None, name, _) => Err(Error::Unsupported(format!("function {name}()"))),
        Expr::Call(Some(target), name, args) => {
            let target = eval(target, vars)?;
            let args: Vec<Value> = args
                .iter()
                .map(|a| eval(a, vars))
                .collect::<Result<_, _>>()?;
            method(&target, name, &args)
        }
        Expr::Unary("!", inner) => match eval(inner, vars)? {
            Value::Bool(b) => Ok(Value::Bool(!b)),
            _ => Err(Error::Overload("!_".into())),
        },
        Expr::Unary(_, inner) => match eval(inner, vars)?.as_i64() {
            Some(n) => Ok(Value::from(-n)),
            None => Err(Error::Overload("-_".into())),
        },
        Expr::Binary("&&", l, r) => logic(l, r, vars, false),
        Expr::Binary("||", l, r) => logic(l, r, vars, true),
        Expr::Binary(op, l, r) => binary(op, &eval(l, vars)?, &eval(r, vars)?),
        Expr::Cond(c, yes, no) => match eval(c, vars)? {
            Value::Bool(true) => eval(yes, vars),
            Value::Bool(false) => eval(no, vars),
            _ => Err(Error::Overload("_?_:_".into())),
        },
    }
}

fn field(base: &Value, name: &str) -> Result<Value, Error> {
    match base {
        Value::Object(m) => m
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchKey(name.to_string())),
        _ => Err(Error::NoSuchKey(name.to_string())),
    }
}

fn size(v: &Value) -> Result<Value, Error> {
    let n = match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => return Err(Error::Overload("size".into())),
    };
    Ok(Value::from(n as i64))
}

fn method(target: &Value, name: &str, args: &[Value]) -> Result<Value, Error> {
    match (target, name, args) {
        (Value::String(s), "startsWith", [Value::String(p)]) => {
            Ok(s.starts_with(p.as_str()).into())
        }
        (Value::String(s), "endsWith", [Value::String(p)]) => Ok(s.ends_with(p.as_str()).into()),
        (Value::String(s), "contains", [Value::String(p)]) => Ok(s.contains(p.as_str()).into()),
        (_, "size", []) => size(target),
        _ => Err(Error::Unsupported(format!("method {name}()"))),
    }
}

/// CEL's commutative logic: a decisive side wins even if the other errs.
fn logic(l: &Expr, r: &Expr, vars: &Map<String, Value>, or: bool) -> Result<Value, Error> {
    let left = eval(l, vars);
    if let Ok(Value::Bool(b)) = left {
        if b == or {
            return Ok(Value::Bool(or));
        }
    }
    let right = eval(r, vars);
    match (left, right) {
        (_, Ok(Value::Bool(b))) if b == or => Ok(Value::Bool(or)),
        (Ok(Value::Bool(_)), Ok(Value::Bool(_))) => Ok(Value::Bool(!or)),
        (Err(e), _) | (_, Err(e)) => Err(e),
        _ => Err(Error::Overload(if or { "_||_" } else { "_&&_" }.into())),
    }
}

fn binary(op: &str, l: &Value, r: &Value) -> Result<Value, Error> {
    let overload = || Error::Overload(format!("_{op}_"));
    match op {
        "==" => Ok(Value::Bool(l == r)),
        "!=" => Ok(Value::Bool(l != r)),
        "in" => match r {
            Value::Array(a) => Ok(Value::Bool(a.contains(l))),
            Value::Object(m) => match l {
                Value::String(k) => Ok(Value::Bool(m.contains_key(k))),
                _ => Err(overload()),
            },
            _ => Err(overload()),
        },
        "+" => match (l, r) {
            (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
            (Value::Array(a), Value::Array(b)) => Ok(Value::Array([a.clone(), b.clone()].concat())),
            _ => match (l.as_i64(), r.as_i64()) {
                (Some(a), Some(b)) => a.checked_add(b).map(Value::from).ok_or_else(overload),
                _ => Err(overload()),
            },
        },
        "-" => match (l.as_i64(), r.as_i64()) {
            (Some(a), Some(b)) => a.checked_sub(b).map(Value::from).ok_or_else(overload),
            _ => Err(overload()),
        },
        _ => {
            let ord = match (l, r) {
                (Value::String(a), Value::String(b)) => a.cmp(b),
                _ => match (l.as_i64(), r.as_i64()) {
                    (Some(a), Some(b)) => a.cmp(&b),
                    _ => return Err(overload()),
                },
            };
            Ok(Value::Bool(match op {
                "<" => ord.is_lt(),
                "<=" => ord.is_le(),
                ">" => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Map<String, Value> {
        json!({
            "object": {"metadata": {"name": "skip-me", "namespace": "prod",
                                     "labels": {"app": "web", "tier": "front"}},
                       "spec": {"replicas": 3}},
            "oldObject": null,
            "request": {"userInfo": {"username": "alice", "groups": ["devs"]},
                        "operation": "CREATE"},
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn check(src: &str) -> Result<bool, Error> {
        eval_bool(src, &vars())
    }

    #[test]
    fn conditions_people_write() {
        assert!(!check("object.metadata.name != 'skip-me'").unwrap());
        assert!(check("object.metadata.namespace == \"prod\"").unwrap());
        assert!(check("has(object.metadata.labels) && 'app' in object.metadata.labels").unwrap());
        assert!(!check("has(object.metadata.annotations)").unwrap());
        assert!(check("request.userInfo.username in ['alice', 'bob']").unwrap());
        assert!(check("!object.metadata.name.startsWith('kube-')").unwrap());
        assert!(check("object.metadata.labels['tier'] == 'front'").unwrap());
        assert!(check("object.spec.replicas >= 1 && object.spec.replicas < 10").unwrap());
        assert!(check("size(object.metadata.labels) == 2").unwrap());
        assert!(check("'devs' in request.userInfo.groups || false").unwrap());
        assert!(check("!(object.metadata.name in ['a', 'b'])").unwrap());
        assert!(check("request.operation == 'CREATE' ? true : false").unwrap());
    }

    #[test]
    fn errors_are_errors_unless_the_other_side_decides() {
        assert_eq!(
            check("object.metadata.annotations.x == 'y'"),
            Err(Error::NoSuchKey("annotations".into()))
        );
        assert_eq!(
            check("oldObject.metadata.name == 'x'"),
            Err(Error::NoSuchKey("metadata".into()))
        );
        // CEL's && and || ignore an error when the other side decides.
        assert!(check("oldObject.metadata.name == 'x' || true").unwrap());
        assert!(!check("false && oldObject.metadata.name == 'x'").unwrap());
        assert!(matches!(
            check("authorizer.group('').check()"),
            Err(Error::Undeclared(_))
        ));
        assert!(matches!(
            check("object.metadata.name.matches('x')"),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(check("object.metadata.name"), Err(Error::NotBool)));
        assert!(matches!(
            check("object.metadata.name =="),
            Err(Error::Syntax { .. })
        ));
        assert!(matches!(check("'unterminated"), Err(Error::Syntax { .. })));
    }
}
