//! Resource quantities as the kubelet needs them: CPU in millicores and
//! memory/storage in bytes.
//!
//! Upstream counterpart: apimachinery's `resource.Quantity` (only the
//! parsing and the two scalings the kubelet uses).

/// Parses a quantity (`100m`, `1.5`, `64Mi`, `1G`, `2e3`) into its value
/// times `scale` (1000 for millicores, 1 for bytes), rounded up as
/// upstream's `MilliValue`/`Value` do. `None` for malformed input.
pub fn parse_scaled(s: &str, scale: f64) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    let v = (n * mult * scale).ceil();
    v.is_finite().then_some(v as i64)
}

/// Millicores of a CPU quantity.
pub fn milli_cpu(s: &str) -> Option<i64> {
    parse_scaled(s, 1000.0)
}

/// Bytes of a memory or storage quantity.
pub fn bytes(s: &str) -> Option<i64> {
    parse_scaled(s, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory() {
        assert_eq!(milli_cpu("100m"), Some(100));
        assert_eq!(milli_cpu("1.5"), Some(1500));
        assert_eq!(milli_cpu("2"), Some(2000));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("2e3"), Some(2000));
        assert_eq!(bytes("12"), Some(12));
        assert_eq!(bytes("x"), None);
        assert_eq!(bytes("1Qi"), None);
    }
}
