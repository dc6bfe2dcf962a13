//! Soft eviction thresholds: a threshold that must hold for its grace
//! period before a pod is evicted for it, and whose victims get a graceful
//! stop (up to `--eviction-max-pod-grace-period`) where hard evictions get
//! none. The node's pressure conditions follow a soft threshold at once,
//! as upstream's do.
//!
//! Upstream counterpart: `pkg/kubelet/eviction/helpers.go`
//! (`ParseThresholdConfig` with `--eviction-soft`,
//! `--eviction-soft-grace-period`; `thresholdsFirstObservedAt`,
//! `thresholdsMetGracePeriod`) and `eviction_manager.go`'s grace period
//! override.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::threshold::{Signal, Threshold, Thresholds};

/// The soft thresholds, their grace periods and the longest stop a victim
/// gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Soft {
    pub thresholds: Thresholds,
    pub grace: HashMap<Signal, Duration>,
    /// `--eviction-max-pod-grace-period` in seconds; zero or less: the
    /// pod's own terminationGracePeriodSeconds.
    pub max_pod_grace_seconds: i64,
}

impl Default for Soft {
    /// None (upstream's default: no soft thresholds).
    fn default() -> Soft {
        Soft {
            thresholds: Thresholds(Vec::new()),
            grace: HashMap::new(),
            max_pod_grace_seconds: 0,
        }
    }
}

impl Soft {
    /// Parses `--eviction-soft` (upstream's SIGNAL<VALUE syntax) and
    /// `--eviction-soft-grace-period` (`SIGNAL=DURATION,...`); every soft
    /// threshold needs a grace period, and a grace period needs its
    /// threshold.
    pub fn parse(
        soft: &str,
        grace: &str,
        max_pod_grace_seconds: i64,
        duration: impl Fn(&str) -> Result<Duration, String>,
    ) -> Result<Soft, String> {
        let thresholds = Thresholds::parse(soft)?;
        let mut periods = HashMap::new();
        for item in grace.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once('=').ok_or_else(|| {
                format!("eviction grace period {item:?}: expected SIGNAL=DURATION")
            })?;
            let signal = Signal::ALL
                .into_iter()
                .find(|s| s.name() == name.trim())
                .ok_or_else(|| format!("unsupported eviction signal {:?}", name.trim()))?;
            let d = duration(value.trim())?;
            periods.insert(signal, d);
        }
        for t in &thresholds.0 {
            if !periods.contains_key(&t.signal) {
                return Err(format!(
                    "grace period must be specified for the soft eviction threshold {}",
                    t.signal.name()
                ));
            }
        }
        for s in periods.keys() {
            if thresholds.get(*s).is_none() {
                return Err(format!(
                    "grace period specified for the soft eviction threshold {} that is not set",
                    s.name()
                ));
            }
        }
        Ok(Soft {
            thresholds,
            grace: periods,
            max_pod_grace_seconds,
        })
    }

    /// The stop a victim of a soft threshold gets: its own grace period,
    /// capped by `--eviction-max-pod-grace-period` when that is positive.
    pub fn pod_grace(&self, pod_seconds: Option<i64>) -> Duration {
        let own = pod_seconds.unwrap_or(30).max(0);
        let secs = if self.max_pod_grace_seconds > 0 {
            own.min(self.max_pod_grace_seconds)
        } else {
            own
        };
        Duration::from_secs(secs as u64)
    }
}

/// When each soft threshold began to be met, continuously.
#[derive(Debug, Default)]
pub struct Tracker {
    first_met: HashMap<Signal, Instant>,
}

impl Tracker {
    /// Records which soft thresholds are met now and returns those met
    /// for at least their grace period.
    pub fn due<'a>(
        &mut self,
        soft: &'a Soft,
        met: &[&'a Threshold],
        now: Instant,
    ) -> Vec<&'a Threshold> {
        self.first_met
            .retain(|s, _| met.iter().any(|t| t.signal == *s));
        let mut out = Vec::new();
        for t in met {
            let since = *self.first_met.entry(t.signal).or_insert(now);
            let grace = soft.grace.get(&t.signal).copied().unwrap_or_default();
            if now.duration_since(since) >= grace {
                out.push(*t);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> Result<Duration, String> {
        s.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| format!("bad {s}"))
    }

    #[test]
    fn parsing_pairs_thresholds_with_grace_periods() {
        let soft = Soft::parse("memory.available<1Gi", "memory.available=90s", 60, secs).unwrap();
        assert_eq!(
            soft.grace[&Signal::MemoryAvailable],
            Duration::from_secs(90)
        );
        assert_eq!(
            Soft::parse("memory.available<1Gi", "", 0, secs).unwrap_err(),
            "grace period must be specified for the soft eviction threshold memory.available"
        );
        assert!(Soft::parse("", "nodefs.available=10s", 0, secs)
            .unwrap_err()
            .contains("not set"));
        assert!(Soft::parse("memory.available<1Gi", "memory.available", 0, secs).is_err());
        assert_eq!(Soft::parse("", "", 0, secs).unwrap(), Soft::default());
    }

    #[test]
    fn a_threshold_is_due_after_holding_for_its_grace_period() {
        let soft = Soft::parse("memory.available<1Gi", "memory.available=30s", 0, secs).unwrap();
        let t = &soft.thresholds.0[0];
        let mut tracker = Tracker::default();
        let t0 = Instant::now();
        assert!(tracker.due(&soft, &[t], t0).is_empty());
        assert!(tracker
            .due(&soft, &[t], t0 + Duration::from_secs(29))
            .is_empty());
        assert_eq!(
            tracker.due(&soft, &[t], t0 + Duration::from_secs(30)).len(),
            1
        );
        // Once it stops being met, the clock starts over.
        assert!(tracker
            .due(&soft, &[], t0 + Duration::from_secs(31))
            .is_empty());
        assert!(tracker
            .due(&soft, &[t], t0 + Duration::from_secs(32))
            .is_empty());
    }

    #[test]
    fn victims_get_their_grace_period_up_to_the_maximum() {
        let capped = Soft {
            max_pod_grace_seconds: 10,
            ..Soft::default()
        };
        assert_eq!(capped.pod_grace(Some(30)), Duration::from_secs(10));
        assert_eq!(capped.pod_grace(Some(5)), Duration::from_secs(5));
        assert_eq!(Soft::default().pod_grace(Some(45)), Duration::from_secs(45));
        assert_eq!(Soft::default().pod_grace(None), Duration::from_secs(30));
    }
}
