//! Eviction signals and hard thresholds: `--eviction-hard` parsing in
//! upstream's syntax (`memory.available<100Mi,nodefs.available<10%`),
//! the defaults, which thresholds an observation meets, and quantities
//! printed as upstream prints them in eviction messages.
//!
//! Upstream counterpart: `pkg/kubelet/eviction/api/types.go` (signals),
//! `helpers.go` (`ParseThresholdConfig`, `thresholdsMet`,
//! `getThresholdMetInfo`) and `defaults_linux.go` (`DefaultEvictionHard`).

use std::fmt;

/// What the eviction manager watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

/// The resource a signal's pressure is about, as eviction messages and
/// node conditions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Memory,
    EphemeralStorage,
    Inodes,
    Pids,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
            Resource::Inodes => "inodes",
            Resource::Pids => "pids",
        })
    }
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn from_name(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.name() == s)
    }

    pub fn resource(self) -> Resource {
        match self {
            Signal::MemoryAvailable => Resource::Memory,
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => Resource::EphemeralStorage,
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => Resource::Inodes,
            Signal::PidAvailable => Resource::Pids,
        }
    }

    /// The node condition this signal drives.
    pub fn condition(self) -> &'static str {
        match self.resource() {
            Resource::Memory => "MemoryPressure",
            Resource::EphemeralStorage | Resource::Inodes => "DiskPressure",
            Resource::Pids => "PIDPressure",
        }
    }

    /// Whether the signal counts bytes (printed as binary quantities).
    fn bytes(self) -> bool {
        matches!(
            self.resource(),
            Resource::Memory | Resource::EphemeralStorage
        )
    }
}

/// A threshold's value: an absolute amount, or a share of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Quantity(i64),
    /// 0.0 to 1.0.
    Percentage(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
}

impl Threshold {
    /// The amount below which the signal is in pressure, given its
    /// capacity.
    pub fn amount(&self, capacity: i64) -> i64 {
        match self.value {
            Value::Quantity(q) => q,
            Value::Percentage(p) => (capacity as f64 * p).round() as i64,
        }
    }

    /// The threshold as the message prints it: a percentage is resolved
    /// against capacity, as upstream's `getThresholdMetInfo` does.
    pub fn quantity_string(&self, capacity: i64) -> String {
        format_quantity(self.amount(capacity), self.signal.bytes())
    }
}

/// The hard thresholds in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

/// Upstream's Linux defaults.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%,imagefs.inodesFree<5%";

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds::parse(DEFAULT_EVICTION_HARD).expect("the defaults parse")
    }
}

impl Thresholds {
    /// Parses `SIGNAL<VALUE[,SIGNAL<VALUE...]`. As upstream, the given
    /// set replaces the defaults (a signal left out has no threshold),
    /// and a zero threshold (`0`, `0%`) turns its signal off.
    pub fn parse(s: &str) -> Result<Thresholds, String> {
        let mut out: Vec<Threshold> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item
                .split_once('<')
                .ok_or_else(|| format!("eviction threshold {item:?}: expected SIGNAL<VALUE"))?;
            let (name, value) = (name.trim(), value.trim());
            let signal = Signal::from_name(name)
                .ok_or_else(|| format!("unsupported eviction signal {name:?}"))?;
            if out.iter().any(|t| t.signal == signal) {
                return Err(format!(
                    "found duplicate eviction threshold for signal {name:?}"
                ));
            }
            let value = parse_value(name, value)?;
            let off = match value {
                Value::Quantity(q) => q == 0,
                Value::Percentage(p) => p == 0.0,
            };
            if !off {
                out.push(Threshold { signal, value });
            }
        }
        Ok(Thresholds(out))
    }

    /// Parses `--eviction-minimum-reclaim` (`SIGNAL=VALUE,...`): how far
    /// past its threshold a signal must recover before a pressure it
    /// caused counts as resolved.
    pub fn parse_min_reclaim(s: &str) -> Result<MinReclaim, String> {
        let mut out = MinReclaim::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once('=').ok_or_else(|| {
                format!("eviction minimum reclaim {item:?}: expected SIGNAL=VALUE")
            })?;
            let (name, value) = (name.trim(), value.trim());
            let signal = Signal::from_name(name)
                .ok_or_else(|| format!("unsupported eviction signal {name:?}"))?;
            out.insert(signal, parse_value(name, value)?);
        }
        Ok(out)
    }

    pub fn get(&self, signal: Signal) -> Option<&Threshold> {
        self.0.iter().find(|t| t.signal == signal)
    }

    /// The two thresholds node allocatable (and the conditions before
    /// the eviction manager's first pass) use.
    /// A quantity for nodefs.available becomes the percentage of the
    /// disk it is, rounded up.
    pub fn legacy(&self, memory_capacity: u64, disk_capacity: u64) -> crate::node::Thresholds {
        let disk = self.reserve(Signal::NodeFsAvailable, disk_capacity);
        crate::node::Thresholds {
            memory: self.reserve(Signal::MemoryAvailable, memory_capacity),
            disk_percent: match self.get(Signal::NodeFsAvailable).map(|t| t.value) {
                Some(Value::Percentage(p)) => (p * 100.0).round() as u64,
                Some(Value::Quantity(_)) if disk_capacity > 0 => {
                    (disk * 100).div_ceil(disk_capacity)
                }
                _ => 0,
            },
        }
    }

    /// What node allocatable holds back for a signal (capacity minus
    /// allocatable): the memory.available and nodefs.available
    /// thresholds, as upstream's `GetNodeAllocatableAbsolute`.
    pub fn reserve(&self, signal: Signal, capacity: u64) -> u64 {
        self.get(signal)
            .map_or(0, |t| t.amount(capacity as i64).max(0) as u64)
            .min(capacity)
    }
}

/// One observed signal: what is available out of what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    pub available: i64,
    pub capacity: i64,
}

/// `--eviction-minimum-reclaim`: per signal, the amount to reclaim past
/// the threshold.
pub type MinReclaim = std::collections::HashMap<Signal, Value>;

fn parse_value(name: &str, value: &str) -> Result<Value, String> {
    if let Some(p) = value.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("invalid eviction percentage {value:?} for {name}"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!(
                "eviction percentage threshold {name} must be >= 0% and <= 100%: {value}"
            ));
        }
        return Ok(Value::Percentage(p / 100.0));
    }
    let q = crate::quantity::bytes(value)
        .ok_or_else(|| format!("invalid eviction quantity {value:?} for {name}"))?;
    if q < 0 {
        return Err(format!(
            "eviction threshold {name} must be positive: {value}"
        ));
    }
    Ok(Value::Quantity(q))
}

/// Thresholds met in the last pass that have not yet recovered their
/// minimum reclaim past the threshold (upstream's `thresholdsMet` with
/// `enforceMinReclaim`): they stay met, so eviction goes on until the
/// signal is clear by that margin, not just back over the line.
pub fn not_yet_resolved<'a>(
    thresholds: &'a Thresholds,
    last_met: &std::collections::HashSet<Signal>,
    reclaim: &MinReclaim,
    observe: impl Fn(Signal) -> Option<Observation>,
) -> Vec<&'a Threshold> {
    thresholds
        .0
        .iter()
        .filter(|t| last_met.contains(&t.signal))
        .filter(|t| {
            observe(t.signal).is_some_and(|o| {
                let extra = reclaim.get(&t.signal).map_or(0, |v| {
                    Threshold {
                        signal: t.signal,
                        value: *v,
                    }
                    .amount(o.capacity)
                });
                o.capacity > 0 && o.available < t.amount(o.capacity) + extra
            })
        })
        .collect()
}

/// The thresholds an observation set meets (available below the
/// threshold's amount); signals not observed never meet one.
pub fn met(
    thresholds: &Thresholds,
    observe: impl Fn(Signal) -> Option<Observation>,
) -> Vec<&Threshold> {
    thresholds
        .0
        .iter()
        .filter(|t| {
            observe(t.signal).is_some_and(|o| o.capacity > 0 && o.available < t.amount(o.capacity))
        })
        .collect()
}

/// A quantity as upstream's `Quantity.String()` prints a canonical
/// value: the largest binary (`100Mi`, `5Ki`) or decimal (`1k`, `2G`)
/// suffix that divides it exactly, else the plain number.
pub fn format_quantity(v: i64, binary: bool) -> String {
    if v != 0 {
        let units: [(&str, i64); 6] = if binary {
            [
                ("Ei", 1 << 60),
                ("Pi", 1 << 50),
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ]
        } else {
            [
                ("E", 1_000_000_000_000_000_000),
                ("P", 1_000_000_000_000_000),
                ("T", 1_000_000_000_000),
                ("G", 1_000_000_000),
                ("M", 1_000_000),
                ("k", 1_000),
            ]
        };
        for (suffix, unit) in units {
            if v % unit == 0 {
                return format!("{}{suffix}", v / unit);
            }
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let t = Thresholds::default();
        assert_eq!(t.0.len(), 5);
        assert_eq!(
            t.get(Signal::MemoryAvailable).unwrap().value,
            Value::Quantity(100 << 20)
        );
        assert_eq!(
            t.get(Signal::ImageFsAvailable).unwrap().value,
            Value::Percentage(0.15)
        );
        assert!(t.get(Signal::PidAvailable).is_none());
    }

    #[test]
    fn parsing_replaces_defaults_and_checks_values() {
        let t = Thresholds::parse(" memory.available<1Gi , pid.available<10% ").unwrap();
        assert_eq!(t.0.len(), 2);
        assert!(t.get(Signal::NodeFsAvailable).is_none());
        assert_eq!(t.get(Signal::PidAvailable).unwrap().amount(1000), 100);
        // Zero turns a signal off.
        let off = Thresholds::parse("memory.available<0,nodefs.available<0%").unwrap();
        assert!(off.0.is_empty());
        assert!(Thresholds::parse("").unwrap().0.is_empty());
        for bad in [
            "memory.available",
            "memory.available<x",
            "nodefs.available<101%",
            "nodefs.available<-1%",
            "memory.available<-5Mi",
            "cpu.available<1",
            "memory.available<1Mi,memory.available<2Mi",
        ] {
            assert!(Thresholds::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn met_compares_available_with_the_amount() {
        let t = Thresholds::parse("memory.available<100Mi,nodefs.available<10%").unwrap();
        let obs = |s: Signal| match s {
            Signal::MemoryAvailable => Some(Observation {
                available: 99 << 20,
                capacity: 1 << 30,
            }),
            Signal::NodeFsAvailable => Some(Observation {
                available: 10,
                capacity: 100,
            }),
            _ => None,
        };
        let m = met(&t, obs);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].signal, Signal::MemoryAvailable);
        assert_eq!(t.reserve(Signal::NodeFsAvailable, 1000), 100);
        assert_eq!(t.reserve(Signal::MemoryAvailable, 1 << 20), 1 << 20);
        let legacy = t.legacy(1 << 30, 1000);
        assert_eq!((legacy.memory, legacy.disk_percent), (100 << 20, 10));
        let q = Thresholds::parse("nodefs.available<150").unwrap();
        assert_eq!(q.legacy(1 << 30, 1000).disk_percent, 15);
    }

    #[test]
    fn a_met_threshold_stays_met_until_its_minimum_reclaim_is_back() {
        let hard = Thresholds::parse("memory.available<100Mi,nodefs.available<10%").unwrap();
        let reclaim =
            Thresholds::parse_min_reclaim("memory.available=50Mi, nodefs.available=5%").unwrap();
        const MI: i64 = 1 << 20;
        let obs = |mem: i64, disk: i64| {
            move |s: Signal| match s {
                Signal::MemoryAvailable => Some(Observation {
                    available: mem * MI,
                    capacity: 1000 * MI,
                }),
                Signal::NodeFsAvailable => Some(Observation {
                    available: disk * MI,
                    capacity: 1000 * MI,
                }),
                _ => None,
            }
        };
        let last: std::collections::HashSet<Signal> =
            [Signal::MemoryAvailable, Signal::NodeFsAvailable].into();
        let signals = |v: Vec<&Threshold>| v.into_iter().map(|t| t.signal).collect::<Vec<_>>();
        // Back over the line but not by the margin: still met.
        assert!(met(&hard, obs(120, 120)).is_empty());
        assert_eq!(
            signals(not_yet_resolved(&hard, &last, &reclaim, obs(120, 120))),
            [Signal::MemoryAvailable, Signal::NodeFsAvailable]
        );
        // Past threshold + reclaim (150Mi; 10% + 5% of 1000Mi = 150Mi): resolved.
        assert!(not_yet_resolved(&hard, &last, &reclaim, obs(150, 151)).is_empty());
        // Only thresholds met last time are held.
        let none = std::collections::HashSet::new();
        assert!(not_yet_resolved(&hard, &none, &reclaim, obs(120, 120)).is_empty());
        assert!(Thresholds::parse_min_reclaim("memory.available").is_err());
        assert!(Thresholds::parse_min_reclaim("bogus=1Mi").is_err());
    }

    #[test]
    fn quantities_print_like_upstream() {
        assert_eq!(format_quantity(100 << 20, true), "100Mi");
        assert_eq!(format_quantity(5 * 1024, true), "5Ki");
        assert_eq!(format_quantity(1536, true), "1536");
        assert_eq!(format_quantity(0, true), "0");
        assert_eq!(format_quantity(4096, false), "4096");
        assert_eq!(format_quantity(2000, false), "2k");
        let pct = Threshold {
            signal: Signal::NodeFsAvailable,
            value: Value::Percentage(0.1),
        };
        assert_eq!(pct.quantity_string(10 << 30), "1Gi");
    }
}
