//! Upstream's human-readable durations, as `kubectl get` shows in AGE.
//!
//! Upstream counterpart: k8s.io/apimachinery/pkg/util/duration.HumanDuration,
//! which keeps two or three significant figures: seconds up to two minutes,
//! minutes and seconds up to ten minutes, then minutes, hours and minutes,
//! hours, days and hours, days, years and days, years.

use k8s_openapi::jiff::SignedDuration;

/// Formats `d` the way `duration.HumanDuration` does. Durations slightly in
/// the future (clock skew of up to a second) read as "0s"; anything further
/// ahead is "<invalid>".
pub fn human_duration(d: SignedDuration) -> String {
    // Go truncates toward zero when converting seconds to int, as as_secs does.
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    #[test]
    fn matches_upstream_table() {
        const MIN: i64 = 60;
        const HOUR: i64 = 3600;
        const DAY: i64 = 24 * HOUR;
        const YEAR: i64 = 365 * DAY;
        let cases: &[(i64, &str)] = &[
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (1, "1s"),
            (5, "5s"),
            (119, "119s"),
            (2 * MIN, "2m"),
            (3 * MIN + 2, "3m2s"),
            (5 * MIN, "5m"),
            (9 * MIN + 59, "9m59s"),
            (10 * MIN, "10m"),
            (10 * MIN + 30, "10m"),
            (179 * MIN + 59, "179m"),
            (3 * HOUR, "3h"),
            (3 * HOUR + 20 * MIN, "3h20m"),
            (7 * HOUR + 59 * MIN, "7h59m"),
            (8 * HOUR + 30 * MIN, "8h"),
            (47 * HOUR, "47h"),
            (2 * DAY, "2d"),
            (2 * DAY + 3 * HOUR, "2d3h"),
            (7 * DAY + 23 * HOUR, "7d23h"),
            (8 * DAY, "8d"),
            (729 * DAY, "729d"),
            (2 * YEAR, "2y"),
            (3 * YEAR + 45 * DAY, "3y45d"),
            (8 * YEAR, "8y"),
            (10 * YEAR + 100 * DAY, "10y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(secs(*d)), *want, "{d}s");
        }
    }

    #[test]
    fn sub_second_skew_truncates_toward_zero() {
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
        assert_eq!(
            human_duration(SignedDuration::from_millis(-2500)),
            "<invalid>"
        );
        assert_eq!(human_duration(SignedDuration::from_millis(1999)), "1s");
    }
}
