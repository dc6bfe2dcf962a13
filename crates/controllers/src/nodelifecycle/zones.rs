//! Zone disruption states and the per-zone rate at which unhealthy nodes
//! get their NoExecute taint — pure, over ready counts and an explicit
//! clock.
//!
//! Upstream counterpart: `ComputeZoneState`, `handleDisruption`,
//! `setLimiterInZone` and the `zoneNoExecuteTainter` rate-limited queues
//! in `pkg/controller/nodelifecycle/node_lifecycle_controller.go`. A zone
//! (region and zone labels) with no ready node is in FullDisruption; one
//! with more than two not-ready nodes making up at least the unhealthy
//! threshold is in PartialDisruption. New NoExecute taints — which is what
//! evicts pods — go out at `--node-eviction-rate` per zone, at
//! `--secondary-node-eviction-rate` in a partially disrupted zone larger
//! than `--large-cluster-size-threshold` (else not at all), and when every
//! zone is fully disrupted the controller assumes the problem is its own
//! connectivity: it stops tainting and lifts the NoExecute taints it set.

use std::collections::HashMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;

/// The flags' defaults, as upstream's.
pub const EVICTION_RATE: f64 = 0.1;
pub const SECONDARY_EVICTION_RATE: f64 = 0.01;
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
pub const LARGE_CLUSTER_SIZE: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// The rate settings (`--node-eviction-rate` and friends).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub eviction: f64,
    pub secondary: f64,
    pub unhealthy_threshold: f64,
    pub large_cluster: usize,
}

impl Default for Rates {
    fn default() -> Rates {
        Rates {
            eviction: EVICTION_RATE,
            secondary: SECONDARY_EVICTION_RATE,
            unhealthy_threshold: UNHEALTHY_ZONE_THRESHOLD,
            large_cluster: LARGE_CLUSTER_SIZE,
        }
    }
}

/// A node's zone key: region and zone from the topology labels (or
/// their deprecated failure-domain forms); "" when it has neither.
pub fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |new: &str, old: &str| {
        labels
            .and_then(|l| l.get(new).or_else(|| l.get(old)))
            .cloned()
            .unwrap_or_default()
    };
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// A zone's state from how many of its nodes are Ready (status True)
/// and how many are not.
pub fn state(ready: usize, not_ready: usize, threshold: f64) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (not_ready + ready) as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The tainting rate (per second) of a zone of `size` nodes in `state`,
/// while not every zone is fully disrupted.
pub fn rate(state: ZoneState, size: usize, rates: &Rates) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => rates.eviction,
        ZoneState::PartialDisruption if size > rates.large_cluster => rates.secondary,
        ZoneState::PartialDisruption => 0.0,
    }
}

/// A token bucket of burst 1, as upstream's per-zone limiter; rate 0
/// never lets anything through.
#[derive(Clone, Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: 1.0,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the zones say for this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Taint through each zone's limiter.
    Limited,
    /// Every zone is fully disrupted: taint nothing, lift NoExecute taints.
    Stopped,
}

/// The zones' states and limiters across passes.
#[derive(Debug)]
pub struct Zones {
    rates: Rates,
    states: HashMap<String, ZoneState>,
    limiters: HashMap<String, Bucket>,
    /// Upstream starts as if everything were fully disrupted, so the
    /// first pass that sees a ready node "exits" that mode.
    all_down: bool,
}

/// What one pass of [`Zones::update`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub mode: Mode,
    /// The controller just left the every-zone-down mode: node health
    /// timers restart so nodes get a full grace period again.
    pub recovered: bool,
}

impl Zones {
    pub fn new(rates: Rates) -> Zones {
        Zones {
            rates,
            states: HashMap::new(),
            limiters: HashMap::new(),
            all_down: true,
        }
    }

    /// Take this pass's Ready statuses by zone: (zone, ready?) per node.
    pub fn update<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = (&'a str, bool)>,
        now: Instant,
    ) -> Outcome {
        let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
        for (zone, ready) in nodes {
            let c = counts.entry(zone).or_default();
            if ready {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
        let new: HashMap<String, (ZoneState, usize)> = counts
            .iter()
            .map(|(z, (r, n))| {
                (
                    z.to_string(),
                    (state(*r, *n, self.rates.unhealthy_threshold), r + n),
                )
            })
            .collect();
        self.states.retain(|z, _| new.contains_key(z));
        self.limiters.retain(|z, _| new.contains_key(z));
        let all_down =
            !new.is_empty() && new.values().all(|(s, _)| *s == ZoneState::FullDisruption);
        if all_down {
            if !self.all_down {
                tracing::info!("every node is not ready; stopping evictions (disruption mode)");
            }
            self.all_down = true;
            for (z, (s, _)) in new {
                self.states.insert(z.clone(), s);
                self.limiters.insert(z, Bucket::new(0.0, now));
            }
            return Outcome {
                mode: Mode::Stopped,
                recovered: false,
            };
        }
        let recovered = std::mem::replace(&mut self.all_down, false);
        for (z, (s, size)) in new {
            let changed = self.states.get(&z) != Some(&s) || !self.limiters.contains_key(&z);
            if changed || recovered {
                self.limiters
                    .insert(z.clone(), Bucket::new(rate(s, size, &self.rates), now));
                self.states.insert(z, s);
            }
        }
        Outcome {
            mode: Mode::Limited,
            recovered,
        }
    }

    /// Whether a node of `zone` may get a new NoExecute taint now (takes
    /// the zone's token when it may).
    pub fn admit(&mut self, zone: &str, now: Instant) -> bool {
        self.limiters.get_mut(zone).is_some_and(|b| b.take(now))
    }

    pub fn state(&self, zone: &str) -> Option<ZoneState> {
        self.states.get(zone).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::time::Duration;

    #[test]
    fn states_follow_upstream_thresholds() {
        assert_eq!(state(0, 1, 0.55), ZoneState::FullDisruption);
        assert_eq!(state(0, 0, 0.55), ZoneState::Normal);
        assert_eq!(
            state(1, 2, 0.55),
            ZoneState::Normal,
            "two down never partial"
        );
        assert_eq!(state(2, 3, 0.55), ZoneState::PartialDisruption);
        assert_eq!(state(3, 3, 0.55), ZoneState::Normal, "50% is under 55%");
        let r = Rates::default();
        assert_eq!(rate(ZoneState::Normal, 3, &r), 0.1);
        assert_eq!(rate(ZoneState::FullDisruption, 3, &r), 0.1);
        assert_eq!(rate(ZoneState::PartialDisruption, 10, &r), 0.0);
        assert_eq!(rate(ZoneState::PartialDisruption, 51, &r), 0.01);
    }

    #[test]
    fn zone_keys_come_from_topology_labels() {
        let mut n = Node::default();
        assert_eq!(zone_of(&n), "");
        n.metadata = ObjectMeta {
            labels: Some(
                [
                    ("topology.kubernetes.io/region".to_string(), "r".to_string()),
                    (
                        "failure-domain.beta.kubernetes.io/zone".to_string(),
                        "z".to_string(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        };
        assert_eq!(zone_of(&n), "r:\x00:z");
    }

    #[test]
    fn a_zone_taints_one_node_per_ten_seconds() {
        let t0 = Instant::now();
        let mut z = Zones::new(Rates::default());
        let out = z.update([("a", true), ("a", false), ("a", false)], t0);
        assert_eq!(
            out,
            Outcome {
                mode: Mode::Limited,
                recovered: true
            },
            "the first pass with a ready node leaves the initial all-down mode"
        );
        assert!(z.admit("a", t0), "the bucket starts with one token");
        assert!(!z.admit("a", t0 + Duration::from_secs(5)));
        assert!(z.admit("a", t0 + Duration::from_secs(10)));
        assert!(!z.admit("b", t0), "unknown zones get nothing");
    }

    #[test]
    fn partial_disruption_in_a_small_zone_stops_tainting() {
        let t0 = Instant::now();
        let mut z = Zones::new(Rates::default());
        let mut nodes = vec![("a", true); 2];
        nodes.extend(vec![("a", false); 3]);
        nodes.push(("b", true));
        z.update(nodes.clone(), t0);
        assert_eq!(z.state("a"), Some(ZoneState::PartialDisruption));
        assert!(!z.admit("a", t0));
        assert!(z.admit("b", t0), "other zones go on");
    }

    #[test]
    fn every_zone_down_stops_all_tainting_until_a_node_is_back() {
        let t0 = Instant::now();
        let mut z = Zones::new(Rates::default());
        z.update([("a", true), ("b", true)], t0);
        let out = z.update([("a", false), ("b", false)], t0);
        assert_eq!(out.mode, Mode::Stopped);
        assert!(!z.admit("a", t0 + Duration::from_secs(60)));
        let out = z.update([("a", true), ("b", false)], t0 + Duration::from_secs(61));
        assert_eq!(
            out,
            Outcome {
                mode: Mode::Limited,
                recovered: true
            }
        );
        // Zone b alone fully down while a is up: the normal rate.
        assert_eq!(z.state("b"), Some(ZoneState::FullDisruption));
        assert!(z.admit("b", t0 + Duration::from_secs(61)));
    }
}
