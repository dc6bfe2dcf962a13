//! The label selector grammar, tokenizer and recursive-descent parser.
//!
//! Upstream counterpart: the `Lexer` and `Parser` in
//! `k8s.io/apimachinery/pkg/labels/selector.go`. The grammar:
//!
//! ```text
//! selector    := requirement ("," requirement)*
//! requirement := ["!"] KEY [ ("in"|"notin") "(" values ")" | ("="|"=="|"!="|">"|"<") VALUE ]
//! ```
//!
//! Whitespace separates tokens and is otherwise ignored; `in`/`notin` are
//! keywords only where an operator may stand, so `x in (in)` works. Error
//! messages are upstream's, because clients show them to users.

use std::collections::BTreeSet;

use super::{Error, Operator, Requirement};
use crate::field::{FieldError, FieldPath};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    End,
    ClosePar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    Greater,
    Ident,
    In,
    Less,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Clone, Debug)]
struct Item {
    tok: Tok,
    lit: String,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits the input into tokens, ending with one `End`.
fn scan(input: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(is_space);
        let Some(c) = rest.chars().next() else {
            items.push(Item {
                tok: Tok::End,
                lit: String::new(),
            });
            return items;
        };
        let (tok, len) = if is_special(c) {
            // Longest operator first: `!=` and `==` before `!` and `=`.
            if rest.starts_with("!=") {
                (Tok::NotEquals, 2)
            } else if rest.starts_with("==") {
                (Tok::DoubleEquals, 2)
            } else {
                let t = match c {
                    '=' => Tok::Equals,
                    '!' => Tok::Not,
                    '(' => Tok::OpenPar,
                    ')' => Tok::ClosePar,
                    ',' => Tok::Comma,
                    '>' => Tok::Greater,
                    _ => Tok::Less,
                };
                (t, 1)
            }
        } else {
            let len = rest
                .find(|c: char| is_special(c) || is_space(c))
                .unwrap_or(rest.len());
            let tok = match &rest[..len] {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            };
            (tok, len)
        };
        items.push(Item {
            tok,
            lit: rest[..len].to_owned(),
        });
        rest = &rest[len..];
    }
}

/// Whether keywords are read as operators or as plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<Item>,
    pos: usize,
}

impl Parser {
    fn token(&self, i: usize, ctx: Ctx) -> (Tok, String) {
        // `scan` always ends with End and nothing consumes past it, but stay
        // total: reading beyond the end yields End again.
        let item = self.items.get(i).or(self.items.last());
        let (tok, lit) = item.map_or((Tok::End, String::new()), |it| (it.tok, it.lit.clone()));
        match (ctx, tok) {
            (Ctx::Values, Tok::In | Tok::NotIn) => (Tok::Ident, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, ctx: Ctx) -> (Tok, String) {
        self.token(self.pos, ctx)
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, String) {
        let t = self.token(self.pos, ctx);
        if self.pos < self.items.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, Error> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Not => {
                    let r = self.requirement().map_err(Error::Requirement)?;
                    reqs.push(r);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return Err(Error::Syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(Error::Syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(Error::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    /// One requirement; errors are the text after `unable to parse
    /// requirement: `.
    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_inferred_operator()?;
        let to_msg = |e: Error| match e {
            Error::InvalidRequirement(m) => m,
            other => other.to_string(),
        };
        if let Some(op) = unary {
            return Requirement::new(&key, op, Vec::new(), &FieldPath::root()).map_err(to_msg);
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        // A set: sorted and deduplicated, as upstream's sets.String.List().
        Requirement::new(&key, op, values.into_iter().collect(), &FieldPath::root()).map_err(to_msg)
    }

    /// Reads `[!]KEY`; infers Exists/DoesNotExist when nothing follows.
    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        let negated = tok == Tok::Not;
        if negated {
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = super::is_label_key(&lit);
        if !errs.is_empty() {
            // Upstream validates the key against a nil field path here,
            // which Go renders as "<nil>"; users see exactly that.
            let e = FieldError::invalid(&FieldPath::root(), lit.as_str(), errs.join("; "));
            return Err(format!("<nil>: {}", e.body()));
        }
        let (next, _) = self.lookahead(Ctx::Values);
        let op = if negated {
            Some(Operator::DoesNotExist)
        } else if next == Tok::End || next == Tok::Comma {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::Greater => Operator::GreaterThan,
            Tok::Less => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        })
    }

    /// `( v1, v2, ... )`; empty entries stand for the empty value.
    fn value_set(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let set = self.identifier_list()?;
                let (tok, _) = self.consume(Ctx::Values);
                if tok != Tok::ClosePar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Tok::ClosePar => {
                self.consume(Ctx::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifier_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Ident => {
                    set.insert(lit);
                    let (t2, l2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosePar => return Ok(set),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    // `(,a`, `a,,b` and `a,)` all contain the empty value.
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _) = self.lookahead(Ctx::Values);
                    if t2 == Tok::ClosePar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if t2 == Tok::Comma {
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<` (may be empty).
    fn exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Tok::Ident {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

/// Parses a selector string into its requirements, in input order.
pub(super) fn parse(input: &str) -> Result<Vec<Requirement>, Error> {
    Parser {
        items: scan(input),
        pos: 0,
    }
    .parse()
}
