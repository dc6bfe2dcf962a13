//! Resource quantities ("100m", "128Mi", "2") added up and printed the
//! way the API prints them.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/api/resource.Quantity`
//! (parse, Add, canonical String). Values are kept exactly in thousandths
//! (the finest unit quota sums need; smaller fractions round up, as
//! upstream rounds up to milli-units), and a sum keeps the format of its
//! first term: binary suffixes (Ki, Mi, ...) stay binary.

use std::fmt;

/// A quantity: thousandths of the unit, and whether it prints binary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quantity {
    pub milli: i128,
    pub binary: bool,
}

/// Errors of quantity parsing.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct ParseError(pub String);

const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const DECIMAL: [(&str, i32); 9] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
];

fn pow10(e: u32) -> i128 {
    10i128.pow(e)
}

/// `n / d` rounded up, for positive `d`.
fn div_ceil(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    if n.rem_euclid(d) == 0 {
        q
    } else {
        q + 1
    }
}

impl Quantity {
    pub fn count(n: i64) -> Quantity {
        Quantity {
            milli: i128::from(n) * 1000,
            binary: false,
        }
    }

    pub fn parse(s: &str) -> Result<Quantity, ParseError> {
        let err = || ParseError(s.to_string());
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        let (neg, num) = match num.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, num.strip_prefix('+').unwrap_or(num)),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 18
            || int.len() > 20
        {
            return Err(err());
        }
        // The number as digits / 10^scale.
        let scale = frac.len() as u32;
        let digits: i128 = format!("{int}{frac}").parse().map_err(|_| err())?;
        let (milli, binary) = if let Some((_, shift)) = BINARY.iter().find(|(n, _)| *n == suffix) {
            (
                div_ceil(digits * 1000 * (1i128 << shift), pow10(scale)),
                true,
            )
        } else {
            let exp: i32 = match DECIMAL.iter().find(|(n, _)| *n == suffix) {
                Some((_, e)) => *e,
                None => {
                    let rest = suffix
                        .strip_prefix('e')
                        .or_else(|| suffix.strip_prefix('E'))
                        .ok_or_else(err)?;
                    rest.parse().map_err(|_| err())?
                }
            };
            // digits * 10^(exp + 3 - scale) thousandths.
            let e = exp + 3 - scale as i32;
            if e > 30 {
                return Err(err());
            }
            let v = if e >= 0 {
                digits * pow10(e as u32)
            } else {
                div_ceil(digits, pow10((-e) as u32))
            };
            (v, false)
        };
        Ok(Quantity {
            milli: if neg { -milli } else { milli },
            binary,
        })
    }

    /// `self + other`, in `self`'s format (a zero takes the other's).
    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            milli: self.milli + other.milli,
            binary: if self.milli == 0 {
                other.binary
            } else {
                self.binary
            },
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.milli;
        if v == 0 {
            return write!(f, "0");
        }
        let sign = if v < 0 { "-" } else { "" };
        let a = v.abs();
        if a % 1000 != 0 {
            return write!(f, "{sign}{a}m");
        }
        let units = a / 1000;
        if self.binary {
            if let Some((name, shift)) =
                BINARY.iter().rev().find(|(_, s)| units % (1i128 << s) == 0)
            {
                return write!(f, "{sign}{}{name}", units >> shift);
            }
            return write!(f, "{sign}{units}");
        }
        let (name, exp) = DECIMAL
            .iter()
            .rev()
            .filter(|(_, e)| *e >= 0)
            .find(|(_, e)| units % pow10(*e as u32) == 0)
            .copied()
            .unwrap_or(("", 0));
        write!(f, "{sign}{}{name}", units / pow10(exp as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("2", "2"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("128Mi", "128Mi"),
            ("1.5Gi", "1536Mi"),
            ("1G", "1G"),
            ("1e3", "1k"),
            ("0", "0"),
            ("1n", "1m"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "{input}");
        }
        assert!(Quantity::parse("ten").is_err());
        assert!(Quantity::parse("1Qi").is_err());
        assert!(Quantity::parse("").is_err());
    }

    #[test]
    fn sums_keep_the_first_terms_format() {
        assert_eq!(q("128Mi").plus(q("128Mi")).to_string(), "256Mi");
        assert_eq!(q("100m").plus(q("400m")).to_string(), "500m");
        assert_eq!(q("500m").plus(q("500m")).to_string(), "1");
        assert_eq!(Quantity::default().plus(q("64Mi")).to_string(), "64Mi");
        assert_eq!(Quantity::count(3).to_string(), "3");
    }
}
