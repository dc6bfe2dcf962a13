//! Field selectors (`?fieldSelector=metadata.name=foo,status.phase!=Running`).
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/fields` (`ParseSelector`,
//! `EscapeValue`, `UnescapeValue`). Only `=`, `==` and `!=` exist, terms are
//! ANDed with commas, and `\`, `,` and `=` inside values are escaped with a
//! backslash. Which field names a resource supports is the resource's
//! business, so matching goes through a caller-given getter and an
//! unsupported name is an error (`field label not supported: foo`), as the
//! API server answers it.

use std::fmt;

/// Why a field selector is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A term without an operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    BadTerm { selector: String, term: String },
    /// A backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A bare `,` or `=` inside a value.
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedRune(char),
    /// The resource does not index this field.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// `=`/`==` (`Equals`) or `!=` (`NotEquals`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One `field op value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub field: String,
    pub operator: Operator,
    /// The unescaped value.
    pub value: String,
}

impl Term {
    fn matches(&self, actual: &str) -> bool {
        match self.operator {
            Operator::Equals | Operator::DoubleEquals => actual == self.value,
            Operator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Upstream renders `==` as `=`: both are the same "has" term.
        let op = match self.operator {
            Operator::Equals | Operator::DoubleEquals => "=",
            Operator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
}

/// Escapes `\`, `,` and `=` so a value survives inside a selector.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`], rejecting unknown escapes and bare `,`/`=`.
pub fn unescape_value(s: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(other) => return Err(Error::InvalidEscape(format!("\\{other}"))),
                None => return Err(Error::InvalidEscape("\\".to_owned())),
            },
            ',' | '=' => return Err(Error::UnescapedRune(c)),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits on commas that are not escaped; escapes stay in the parts.
fn split_terms(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Finds the first operator; `!=` and `==` win over `=` at the same place.
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", Operator::NotEquals),
            ("==", Operator::DoubleEquals),
            ("=", Operator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

impl Selector {
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Parses the selector syntax; terms come out sorted as upstream sorts
    /// them, so [`Display`](fmt::Display) is canonical.
    pub fn parse(selector: &str) -> Result<Self, Error> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let (field, operator, raw) = split_term(part).ok_or_else(|| Error::BadTerm {
                selector: selector.to_owned(),
                term: part.to_owned(),
            })?;
            terms.push(Term {
                field: field.to_owned(),
                operator,
                value: unescape_value(raw)?,
            });
        }
        Ok(Selector { terms })
    }

    /// A selector requiring `field=value` for each pair.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut terms: Vec<Term> = pairs
            .into_iter()
            .map(|(f, v)| Term {
                field: f.to_owned(),
                operator: Operator::Equals,
                value: v.to_owned(),
            })
            .collect();
        terms.sort_by(|a, b| a.field.cmp(&b.field));
        Selector { terms }
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Checks every field name against what the resource supports, so a
    /// LIST can be refused before scanning anything.
    pub fn validate(&self, supported: impl Fn(&str) -> bool) -> Result<(), Error> {
        match self.terms.iter().find(|t| !supported(&t.field)) {
            Some(t) => Err(Error::UnsupportedField(t.field.clone())),
            None => Ok(()),
        }
    }

    /// Matches an object through `get`, which returns a field's value, or
    /// `None` when the resource does not support that field name.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> Result<bool, Error> {
        for t in &self.terms {
            let actual = get(&t.field).ok_or_else(|| Error::UnsupportedField(t.field.clone()))?;
            if !t.matches(&actual) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// If the selector pins `field` with `=`/`==`, that value (lets a
    /// caller turn `metadata.name=x` into a point read).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator != Operator::NotEquals)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pod_fields() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("metadata.name", "web-1"),
            ("metadata.namespace", "default"),
            ("status.phase", "Running"),
            ("spec.nodeName", ""),
            ("metadata.annotations", "a=b,c"),
        ])
    }

    fn matches(sel: &str) -> Result<bool, Error> {
        let f = pod_fields();
        Selector::parse(sel)?.matches(|k| f.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn matching_table() {
        let cases = [
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name=web-2", false),
            ("metadata.name!=web-2", true),
            ("status.phase!=Running", false),
            ("metadata.name=web-1,status.phase=Running", true),
            ("metadata.name=web-1,status.phase=Pending", false),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            (r"metadata.annotations=a\=b\,c", true),
        ];
        for (sel, want) in cases {
            assert_eq!(matches(sel).unwrap(), want, "{sel}");
        }
    }

    #[test]
    fn unsupported_fields_are_errors() {
        assert_eq!(
            matches("spec.foo=bar").unwrap_err().to_string(),
            "field label not supported: spec.foo"
        );
        let s = Selector::parse("metadata.name=a,spec.foo=b").unwrap();
        let err = s
            .validate(|f| f.starts_with("metadata."))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "field label not supported: spec.foo");
        assert!(Selector::parse("metadata.name=a")
            .unwrap()
            .validate(|f| f == "metadata.name")
            .is_ok());
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            Selector::parse("foo").unwrap_err().to_string(),
            "invalid selector: 'foo'; can't understand 'foo'"
        );
        assert_eq!(
            Selector::parse("a=b,c").unwrap_err().to_string(),
            "invalid selector: 'a=b,c'; can't understand 'c'"
        );
        assert_eq!(
            Selector::parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            Selector::parse(r"a=b\").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            Selector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: ="
        );
    }

    #[test]
    fn canonical_rendering_sorts_and_escapes() {
        let s = Selector::parse(r"z=1,a!=x\,y,m==v").unwrap();
        assert_eq!(s.to_string(), r"a!=x\,y,m=v,z=1");
        assert_eq!(
            Selector::parse(&s.to_string()).unwrap().to_string(),
            s.to_string()
        );
        assert_eq!(s.terms()[0].value, "x,y");
        assert_eq!(escape_value(r"a\b,c=d"), r"a\\b\,c\=d");
        assert_eq!(
            unescape_value(&escape_value(r"a\b,c=d")).unwrap(),
            r"a\b,c=d"
        );
        assert_eq!(Selector::parse(",,a=b,").unwrap().to_string(), "a=b");
    }

    #[test]
    fn exact_match_and_pairs() {
        let s = Selector::parse("metadata.name=x,status.phase!=Running").unwrap();
        assert_eq!(s.requires_exact_match("metadata.name"), Some("x"));
        assert_eq!(s.requires_exact_match("status.phase"), None);
        let p = Selector::from_pairs([("spec.nodeName", "n1"), ("metadata.name", "p")]);
        assert_eq!(p.to_string(), "metadata.name=p,spec.nodeName=n1");
        assert!(!p.is_empty());
        assert!(Selector::everything().is_empty());
    }

    #[test]
    fn splits_on_unescaped_commas_only() {
        assert_eq!(split_terms(r"k=\,,k2=v2"), vec![r"k=\,", "k2=v2"]);
        assert_eq!(split_terms(r"k=\\,k2=v2"), vec![r"k=\\", "k2=v2"]);
        assert_eq!(split_terms(r"k=\\\,,k2=v2"), vec![r"k=\\\,", "k2=v2"]);
        assert_eq!(split_terms("함=수,목=록"), vec!["함=수", "목=록"]);
        assert_eq!(split_term("c!=v"), Some(("c", Operator::NotEquals, "v")));
        assert_eq!(split_term("b==v"), Some(("b", Operator::DoubleEquals, "v")));
        assert_eq!(split_term("함=수"), Some(("함", Operator::Equals, "수")));
        assert_eq!(split_term("a"), None);
        let s = Selector::parse(r"x=a||y\=b").unwrap();
        assert_eq!(s.terms()[0].value, "a||y=b");
        assert_eq!(s.to_string(), r"x=a||y\=b");
    }

    #[test]
    fn odd_input_never_panics() {
        for s in ["=", "!=", "==", "\\", "é=ü", "a=\\é", ",", "a!", "!a=b"] {
            let _ = Selector::parse(s);
        }
        let s = Selector::parse("=x").unwrap();
        assert_eq!(s.terms()[0].field, "");
    }
}
