//! Resource quantities (`"500m"`, `"1Gi"`, `"2e3"`): parsed exactly,
//! compared, added and printed in canonical form, and scaled to the
//! millicores and bytes that the scheduler and kubelet count in.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/api/resource.Quantity`
//! (`ParseQuantity`, `Cmp`, `Add`, `String`, `MilliValue`, `Value`).
//! Values are kept as integer nano-units, so `"1"` and `"1000m"` compare
//! equal without floating-point error; like upstream, precision below a
//! nano-unit rounds up.

use serde_json::Value;

/// The message upstream's parser gives for a malformed quantity.
pub const QUANTITY_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A parsed quantity in nano-units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

impl Quantity {
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The value in nano-units (so `1` is 1_000_000_000).
    pub fn nanos(self) -> i128 {
        self.0
    }
}

/// Parse a quantity given as a JSON string or number.
pub fn parse_value(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => parse(s),
        Value::Number(n) => parse(&n.to_string()),
        _ => None,
    }
}

/// Parse a quantity string; `None` when it is malformed or out of range.
pub fn parse(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let split = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(split);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    // mantissa * 10^-frac_len * 10^exp10 * 2^exp2, in nano-units.
    let digits = format!("{whole}{frac}");
    let mantissa: i128 = digits.parse().ok()?;
    let (exp10, exp2) = suffix_exponents(suffix)?;
    let mut scale10 = exp10 + 9 - frac.len() as i32;
    let mut value = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    while scale10 > 0 {
        value = value.checked_mul(10)?;
        scale10 -= 1;
    }
    while scale10 < 0 {
        // Round up what falls below a nano-unit, as upstream does.
        value = (value + 9) / 10;
        scale10 += 1;
    }
    Some(Quantity(if negative { -value } else { value }))
}

/// Whether a quantity string has a binary suffix (`Ki`, `Mi`, ...): a sum
/// then prints in binary, as upstream keeps the format of its first term.
pub fn is_binary(s: &str) -> bool {
    let s = s.trim();
    s.ends_with('i') && s.len() > 2
}

/// A quantity in upstream's canonical form (`Quantity.String()`): the
/// largest suffix that keeps the number whole, binary when asked
/// (`1536Mi`, `1500m`, `2k`, `3`).
pub fn format(q: Quantity, binary: bool) -> String {
    const BILLION: i128 = 1_000_000_000;
    let v = q.0;
    if v == 0 {
        return "0".into();
    }
    let sign = if v < 0 { "-" } else { "" };
    let a = v.abs();
    if a % BILLION != 0 {
        let (value, suffix) = if a % 1_000_000 == 0 {
            (a / 1_000_000, "m")
        } else if a % 1_000 == 0 {
            (a / 1_000, "u")
        } else {
            (a, "n")
        };
        return format!("{sign}{value}{suffix}");
    }
    let units = a / BILLION;
    if binary {
        for (suffix, shift) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            if units % (1i128 << shift) == 0 {
                return format!("{sign}{}{suffix}", units >> shift);
            }
        }
        return format!("{sign}{units}");
    }
    for (suffix, exp) in [
        ("E", 18),
        ("P", 15),
        ("T", 12),
        ("G", 9),
        ("M", 6),
        ("k", 3),
    ] {
        let unit = 10i128.pow(exp);
        if units % unit == 0 {
            return format!("{sign}{}{suffix}", units / unit);
        }
    }
    format!("{sign}{units}")
}

impl Quantity {
    /// A whole number of units (an object count).
    pub fn count(n: i64) -> Quantity {
        Quantity(i128::from(n) * 1_000_000_000)
    }

    /// A quantity of `n` nano-units.
    pub fn from_nanos(n: i128) -> Quantity {
        Quantity(n)
    }

    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity(self.0 + other.0)
    }

    /// Thousandths of the unit, rounded away from zero (upstream's
    /// `MilliValue`): millicores of a CPU quantity.
    pub fn milli_value(self) -> i128 {
        div_away_from_zero(self.0, 1_000_000)
    }

    /// Whole units, rounded away from zero (upstream's `Value`): bytes of
    /// a memory or storage quantity.
    pub fn value(self) -> i128 {
        div_away_from_zero(self.0, 1_000_000_000)
    }
}

/// `n / d` for positive `d`, rounded away from zero.
fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else {
        q + n.signum()
    }
}

/// The decimal and binary exponents a suffix stands for.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let decimal = |e| Some((e, 0));
    let binary = |e| Some((0, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().ok()?;
            (-30..=30).contains(&e).then_some((e, 0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_quantities_in_different_notations() {
        assert_eq!(parse("1"), parse("1000m"));
        assert_eq!(parse("0.1"), parse("100m"));
        assert_eq!(parse("1Ki"), parse("1024"));
        assert_eq!(parse("1k"), parse("1e3"));
        assert_eq!(parse("1.5Gi"), parse("1536Mi"));
        assert_eq!(parse_value(&serde_json::json!(2)), parse("2"));
    }

    #[test]
    fn ordering_and_zero() {
        assert!(parse("500m").unwrap() < parse("1").unwrap());
        assert!(parse("1Gi").unwrap() > parse("1G").unwrap());
        assert!(parse("-1").unwrap() < parse("0").unwrap());
        assert!(parse("0Mi").unwrap().is_zero());
        assert_eq!(parse("1n"), Some(Quantity(1)));
        // Below a nano-unit rounds up.
        assert_eq!(parse("0.1n"), Some(Quantity(1)));
    }

    #[test]
    fn canonical_format() {
        for (input, out) in [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("128Mi", "128Mi"),
            ("1.5Gi", "1536Mi"),
            ("1G", "1G"),
            ("0", "0"),
            ("2", "2"),
        ] {
            assert_eq!(
                format(parse(input).unwrap(), is_binary(input)),
                out,
                "{input}"
            );
        }
        let sum = parse("128Mi").unwrap().plus(parse("128Mi").unwrap());
        assert_eq!(format(sum, true), "256Mi");
        assert_eq!(format(Quantity::count(3), false), "3");
    }

    #[test]
    fn milli_value_and_value_round_away_from_zero() {
        let milli = |s| parse(s).unwrap().milli_value();
        let value = |s| parse(s).unwrap().value();
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli("1.1"), 1100);
        assert_eq!(milli("1u"), 1);
        assert_eq!(milli("-1u"), -1);
        assert_eq!(value("64Mi"), 64 << 20);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("2e3"), 2000);
        assert_eq!(value("500M"), 500_000_000);
        assert_eq!(value("0.5"), 1);
        assert_eq!(value("12"), 12);
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in [
            "", "abc", "1x", "1.2.3", "Mi", "1e", "--1", ".", "1Qi", "1Xi",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
