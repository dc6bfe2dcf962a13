//! Cron schedules: the standard five fields (minute, hour, day of month,
//! month, day of week) with lists, ranges, steps and names, and the
//! `@yearly`/`@monthly`/`@weekly`/`@daily`/`@hourly` shorthands; next
//! activation times computed in a time zone.
//!
//! Upstream counterpart: `github.com/robfig/cron/v3` as the CronJob
//! controller uses it (`cron.ParseStandard`, `SpecSchedule.Next`). As
//! there, when both day fields are restricted a day matching either one
//! fires (the traditional cron rule), and `*` in one of them means the
//! other alone decides.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Errors parsing a schedule; the message is what users read in events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected exactly 5 fields, found {0}: {1:?}")]
    FieldCount(usize, String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse {field} field {expr:?}: {why}")]
    Field {
        field: &'static str,
        expr: String,
        why: String,
    },
}

/// One field's allowed values as a bit set, and whether it was `*`/`?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(&self, v: i8) -> bool {
        v >= 0 && self.bits & (1 << v) != 0
    }
}

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl std::str::FromStr for Schedule {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Schedule, Error> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(Error::Descriptor(s.into())),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(Error::FieldCount(fields.len(), spec.into()));
        }
        Ok(Schedule {
            minute: field(fields[0], &MINUTE)?,
            hour: field(fields[1], &HOUR)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTH)?,
            dow: field(fields[4], &DOW)?,
        })
    }
}

fn field(expr: &str, b: &Bounds) -> Result<Field, Error> {
    let err = |why: String| Error::Field {
        field: b.name,
        expr: expr.into(),
        why,
    };
    let mut out = Field {
        bits: 0,
        star: false,
    };
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let value = |s: &str| -> Result<u32, Error> {
            if let Some(i) = b.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                return Ok(b.min + i as u32);
            }
            s.parse::<u32>()
                .map_err(|_| err(format!("{s:?} is not a number")))
        };
        let (lo, mut hi, star) = match range {
            "*" | "?" => (b.min, b.max, true),
            r => match r.split_once('-') {
                Some((a, z)) => (value(a)?, value(z)?, false),
                None => {
                    let v = value(r)?;
                    (v, v, false)
                }
            },
        };
        let step = match step {
            None => 1,
            Some(s) => {
                // "N/step" runs from N to the end of the range.
                if !star && !range.contains('-') {
                    hi = b.max;
                }
                s.parse::<u32>()
                    .map_err(|_| err(format!("bad step {s:?}")))?
            }
        };
        if lo < b.min || hi > b.max || lo > hi {
            return Err(err(format!("range {lo}-{hi} outside {}-{}", b.min, b.max)));
        }
        if step == 0 {
            return Err(err("step of zero".into()));
        }
        out.star |= star && step == 1;
        let mut v = lo;
        while v <= hi {
            out.bits |= 1 << v;
            v += step;
        }
    }
    Ok(out)
}

impl Schedule {
    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom.has(d.day());
        let dow = self.dow.has(d.weekday().to_sunday_zero_offset());
        if self.dom.star || self.dow.star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first activation strictly after `after`, in `tz`; None when
    /// there is none within five years (e.g. "0 0 30 2 *").
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let mut dt = DateTime::from_parts(
            start.date(),
            jiff::civil::time(start.hour(), start.minute(), 0, 0),
        )
        .checked_add(1.minute())
        .ok()?;
        let limit = start.year() + 5;
        while dt.year() <= limit {
            if !self.month.has(dt.month()) {
                dt = dt
                    .date()
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !self.day_matches(dt.date()) {
                dt = dt
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !self.hour.has(dt.hour()) {
                dt = DateTime::from_parts(dt.date(), jiff::civil::time(dt.hour(), 0, 0, 0))
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !self.minute.has(dt.minute()) {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            // A time skipped by a DST change fires right after the gap.
            let ts = dt.to_zoned(tz.clone()).ok()?.timestamp();
            if ts > after {
                return Some(ts);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str, tz: &str) -> String {
        let s: Schedule = spec.parse().unwrap();
        let tz = TimeZone::get(tz).unwrap();
        s.next(at(after), &tz).unwrap().to_string()
    }

    #[test]
    fn every_minute_and_steps() {
        assert_eq!(
            next("*/1 * * * *", "2024-01-01T00:00:30Z", "UTC"),
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T00:16:00Z", "UTC"),
            "2024-01-01T00:30:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T00:26:00Z", "UTC"),
            "2024-01-01T00:45:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-01-01T10:00:00Z", "UTC"),
            "2024-01-01T13:00:00Z"
        );
    }

    #[test]
    fn names_lists_and_shorthands() {
        // 2024-01-01 is a Monday.
        assert_eq!(
            next("0 0 * * SAT,sun", "2024-01-01T00:00:00Z", "UTC"),
            "2024-01-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 mar-apr *", "2024-01-01T00:00:00Z", "UTC"),
            "2024-03-01T00:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2024-01-01T00:00:00Z", "UTC"),
            "2024-01-01T01:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T00:00:00Z", "UTC"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-01-01T00:00:00Z", "UTC"),
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn restricted_day_fields_are_ored() {
        // The 15th or any Friday: Friday the 5th comes first.
        assert_eq!(
            next("0 0 15 * 5", "2024-01-01T00:00:00Z", "UTC"),
            "2024-01-05T00:00:00Z"
        );
        // With a star day of week only the day of month counts.
        assert_eq!(
            next("0 0 15 * *", "2024-01-01T00:00:00Z", "UTC"),
            "2024-01-15T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2025-01-01T00:00:00Z", "UTC"),
            "2028-02-29T00:00:00Z"
        );
    }

    #[test]
    fn time_zones_shift_the_activation_and_follow_dst() {
        assert_eq!(
            next("0 9 * * *", "2024-01-01T00:00:00Z", "Asia/Tokyo"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "2024-01-01T00:00:00Z", "America/New_York"),
            "2024-01-01T14:00:00Z"
        );
        // Summer time: 09:00 in New York is 13:00 UTC.
        assert_eq!(
            next("0 9 * * *", "2024-07-01T00:00:00Z", "America/New_York"),
            "2024-07-01T13:00:00Z"
        );
        // 02:30 does not exist on 2024-03-10 in New York.
        assert_eq!(
            next("30 2 * * *", "2024-03-10T05:00:00Z", "America/New_York"),
            "2024-03-10T07:30:00Z"
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(matches!(
            "* * * *".parse::<Schedule>(),
            Err(Error::FieldCount(4, _))
        ));
        assert!(matches!(
            "60 * * * *".parse::<Schedule>(),
            Err(Error::Field {
                field: "minute",
                ..
            })
        ));
        assert!(matches!(
            "* * * foo *".parse::<Schedule>(),
            Err(Error::Field { field: "month", .. })
        ));
        assert!(matches!(
            "*/0 * * * *".parse::<Schedule>(),
            Err(Error::Field { .. })
        ));
        assert!(matches!(
            "@sometimes".parse::<Schedule>(),
            Err(Error::Descriptor(_))
        ));
        let never: Schedule = "0 0 30 2 *".parse().unwrap();
        assert_eq!(never.next(at("2024-01-01T00:00:00Z"), &TimeZone::UTC), None);
    }
}
