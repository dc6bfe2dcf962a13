//! Timestamps as the API writes them, and the clock that produces them.
//!
//! Upstream counterparts: `metav1.Time` (RFC 3339 at second precision,
//! always UTC: `2026-11-22T04:47:08Z` — `creationTimestamp`,
//! `deletionTimestamp`, conditions) and `metav1.MicroTime` (microseconds:
//! `2026-11-22T04:47:08.123456Z` — Events, Leases). Built on `chrono`.
//!
//! The current time comes from a [`Clock`] so registries and controllers
//! can be tested at fixed instants.

use chrono::{DateTime, SecondsFormat, Utc};

/// A point in time, always UTC.
pub type Timestamp = DateTime<Utc>;

/// A signed span of time, to add to a [`Timestamp`].
pub use chrono::TimeDelta;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid timestamp {value:?}: {reason}")]
    Invalid { value: String, reason: String },
}

/// `metav1.Time` text: seconds precision, `Z` suffix. Sub-second parts
/// are truncated, as Go's encoder does.
pub fn format_time(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `metav1.MicroTime` text: exactly six fractional digits, `Z` suffix.
pub fn format_micro_time(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 timestamp (any offset, any fraction) into UTC.
/// Both `Time` and `MicroTime` text parse; `metav1.Time` then drops the
/// fraction, see [`truncate_to_seconds`].
pub fn parse_time(s: &str) -> Result<Timestamp, Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Invalid {
            value: s.to_owned(),
            reason: e.to_string(),
        })
}

/// Drops sub-second precision, as storing a `metav1.Time` does.
pub fn truncate_to_seconds(t: &Timestamp) -> Timestamp {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(*t)
}

/// Drops sub-microsecond precision, as storing a `metav1.MicroTime` does.
pub fn truncate_to_micros(t: &Timestamp) -> Timestamp {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(*t)
}

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now()
    }
}

/// A clock stopped at one instant, for tests and replays.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        parse_time("2026-11-22T04:47:08.123456789Z").unwrap()
    }

    #[test]
    fn formats_like_metav1() {
        assert_eq!(format_time(&at()), "2026-11-22T04:47:08Z");
        assert_eq!(format_micro_time(&at()), "2026-11-22T04:47:08.123456Z");
        let whole = parse_time("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(format_micro_time(&whole), "2026-01-02T03:04:05.000000Z");
    }

    #[test]
    fn parses_offsets_into_utc() {
        let t = parse_time("2026-11-22T06:47:08+02:00").unwrap();
        assert_eq!(format_time(&t), "2026-11-22T04:47:08Z");
        let e = parse_time("yesterday").unwrap_err().to_string();
        assert!(e.starts_with("invalid timestamp \"yesterday\""), "{e}");
        assert!(parse_time("").is_err());
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn truncation() {
        assert_eq!(
            format_micro_time(&truncate_to_seconds(&at())),
            "2026-11-22T04:47:08.000000Z"
        );
        assert_eq!(
            truncate_to_micros(&at()).timestamp_subsec_nanos(),
            123_456_000
        );
    }

    #[test]
    fn clocks() {
        let fixed = FixedClock(at());
        assert_eq!(fixed.now(), at());
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
        // Sanity: the system clock is past the year 2020.
        assert!(a.timestamp() > 1_577_836_800);
    }
}
