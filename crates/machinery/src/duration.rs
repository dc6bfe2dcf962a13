//! Durations as Kubernetes flags, annotations and settings write them:
//! Go's `time.ParseDuration` forms (`2m0s`, `1h30m`, `500ms`, `1.5s`),
//! and — where a setting also takes them — bare numbers as seconds.
//!
//! Upstream counterpart: Go's `time.ParseDuration` (the units h, m, s,
//! ms, us/µs, ns; no days), which every kubelet and controller-manager
//! duration flag goes through.

use std::time::Duration;

/// Parses a Go duration; a bare number counts as seconds (`"30"`), as the
/// annotations and environment settings that take durations allow.
/// `None` for anything else, or a negative or non-finite value.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit..];
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

/// Parses a duration as Go's flags take it: a unit is required except
/// for `0`.
pub fn parse_go(s: &str) -> Option<Duration> {
    let bare = s.trim().parse::<f64>().is_ok();
    if bare && s.trim() != "0" {
        return None;
    }
    parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms_and_bare_seconds() {
        assert_eq!(parse("2m0s"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("40s"), Some(Duration::from_secs(40)));
        assert_eq!(parse("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        for bad in ["", "soon", "3 days", "5d", "-1s", "-3", "m"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse_go("5"), None);
        assert_eq!(parse_go("0"), Some(Duration::ZERO));
        assert_eq!(parse_go("2m0s"), Some(Duration::from_secs(120)));
    }
}
