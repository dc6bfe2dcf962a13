//! `/stats/summary` (the Summary API), `/metrics/resource` (what
//! metrics-server scrapes) and `/metrics` (the kubelet's own Prometheus
//! metrics).
//!
//! Upstream counterpart: `pkg/kubelet/server/stats` (summary.go and
//! `k8s.io/kubelet/pkg/apis/stats/v1alpha1` for the shape),
//! `pkg/kubelet/metrics/collectors/resource_metrics.go`. CPU rates
//! (`usageNanoCores`) come from two samples of the cumulative counters;
//! a background sampler takes one every 10 s (cAdvisor's housekeeping),
//! and every request takes another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::runtime::{NodeStats, PodStats};

/// Cumulative CPU samples by key (`""` for the node, `ns/pod` for a pod,
/// `ns/pod/container` for a container), turned into rates.
#[derive(Default)]
pub struct CpuRates {
    samples: Mutex<HashMap<String, Sample>>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_ns: u64,
    rate: Option<u64>,
}

/// Two samples closer than this keep the previous rate (too noisy).
const MIN_WINDOW: Duration = Duration::from_millis(500);

impl CpuRates {
    /// Records `cpu_ns` for `key` at `now`; returns nanocores since the
    /// previous sample, when there is one.
    pub fn observe(&self, key: &str, cpu_ns: u64, now: Instant) -> Option<u64> {
        let mut map = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(key) {
            Some(s) if now.duration_since(s.at) < MIN_WINDOW => s.rate,
            Some(s) => {
                let secs = now.duration_since(s.at).as_secs_f64();
                let rate = (cpu_ns.saturating_sub(s.cpu_ns) as f64 / secs) as u64;
                *s = Sample {
                    at: now,
                    cpu_ns,
                    rate: Some(rate),
                };
                Some(rate)
            }
            None => {
                map.insert(
                    key.to_string(),
                    Sample {
                        at: now,
                        cpu_ns,
                        rate: None,
                    },
                );
                None
            }
        }
    }

    /// Forgets keys not in `live` (pods and containers that are gone).
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        let mut map = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| k.is_empty() || live.contains(k));
    }
}

/// Reads node CPU and memory from /proc/stat and /proc/meminfo.
pub fn read_proc_node_stats() -> NodeStats {
    let mut s = NodeStats::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
            // user nice system idle iowait irq softirq steal: busy = all
            // but idle and iowait; USER_HZ is 100 on Linux.
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let busy: u64 = v
                .iter()
                .take(8)
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 4)
                .map(|(_, x)| x)
                .sum();
            s.cpu_usage_ns = busy.saturating_mul(10_000_000);
        }
    }
    if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
        let field = |name: &str| {
            mem.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .unwrap_or(0)
        };
        s.memory_total = field("MemTotal:");
        s.memory_available = field("MemAvailable:");
        s.memory_working_set = s.memory_total.saturating_sub(s.memory_available);
    }
    s
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The Summary API document (`stats/v1alpha1.Summary`).
pub fn summary(
    node_name: &str,
    boot: SystemTime,
    node: &NodeStats,
    pods: &[PodStats],
    rates: &CpuRates,
) -> Value {
    let now = Instant::now();
    let t = rfc3339(SystemTime::now());
    let cpu = |key: &str, ns: u64| {
        let mut v = json!({"time": t, "usageCoreNanoSeconds": ns});
        if let Some(r) = rates.observe(key, ns, now) {
            v["usageNanoCores"] = json!(r);
        }
        v
    };
    let mut live = std::collections::HashSet::new();
    let pods: Vec<Value> = pods
        .iter()
        .map(|p| {
            let key = format!("{}/{}", p.namespace, p.name);
            live.insert(key.clone());
            let (mut pcpu, mut pws, mut pusage) = (0u64, 0u64, 0u64);
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    pcpu += c.stats.cpu_usage_ns;
                    pws += c.stats.memory_working_set;
                    pusage += c.stats.memory_usage;
                    let ckey = format!("{key}/{}", c.name);
                    live.insert(ckey.clone());
                    json!({
                        "name": c.name,
                        "startTime": c.start_time.map(rfc3339),
                        "cpu": cpu(&ckey, c.stats.cpu_usage_ns),
                        "memory": {"time": t, "usageBytes": c.stats.memory_usage,
                                   "workingSetBytes": c.stats.memory_working_set},
                    })
                })
                .collect();
            json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": p.start_time.map(rfc3339),
                "containers": containers,
                "cpu": cpu(&key, pcpu),
                "memory": {"time": t, "usageBytes": pusage, "workingSetBytes": pws},
            })
        })
        .collect();
    rates.retain(&live);
    json!({
        "node": {
            "nodeName": node_name,
            "startTime": rfc3339(boot),
            "cpu": cpu("", node.cpu_usage_ns),
            "memory": {
                "time": t,
                "availableBytes": node.memory_available,
                "usageBytes": node.memory_working_set,
                "workingSetBytes": node.memory_working_set,
            },
        },
        "pods": pods,
    })
}

/// `/metrics/resource` in the Prometheus text format, with millisecond
/// timestamps as the kubelet writes them.
pub fn resource_metrics(node: &NodeStats, pods: &[PodStats]) -> String {
    let ms = (secs(SystemTime::now()) * 1000.0) as u64;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!(
            "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}\n"
        ));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{labels} {v} {ms}\n"));
        }
    };
    let c_labels = |p: &PodStats, c: &str| {
        format!(
            "{{container=\"{c}\",namespace=\"{}\",pod=\"{}\"}}",
            p.namespace, p.name
        )
    };
    let p_labels = |p: &PodStats| format!("{{namespace=\"{}\",pod=\"{}\"}}", p.namespace, p.name);
    let containers = || {
        pods.iter()
            .flat_map(|p| p.containers.iter().map(move |c| (p, c)))
    };
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        containers()
            .map(|(p, c)| (c_labels(p, &c.name), c.stats.cpu_usage_ns as f64 / 1e9))
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        containers()
            .map(|(p, c)| (c_labels(p, &c.name), c.stats.memory_working_set as f64))
            .collect(),
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
        containers()
            .filter_map(|(p, c)| Some((c_labels(p, &c.name), secs(c.start_time?))))
            .collect(),
    );
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        vec![(String::new(), node.cpu_usage_ns as f64 / 1e9)],
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        vec![(String::new(), node.memory_working_set as f64)],
    );
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pods.iter()
            .map(|p| {
                let ns: u64 = p.containers.iter().map(|c| c.stats.cpu_usage_ns).sum();
                (p_labels(p), ns as f64 / 1e9)
            })
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        pods.iter()
            .map(|p| {
                let b: u64 = p
                    .containers
                    .iter()
                    .map(|c| c.stats.memory_working_set)
                    .sum();
                (p_labels(p), b as f64)
            })
            .collect(),
    );
    out.push_str("# HELP scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error 0\n");
    out
}

/// `/metrics`: a few of the kubelet's own gauges and counters.
pub fn kubelet_metrics(
    running_pods: usize,
    running_containers: usize,
    requests: &[(String, u64)],
) -> String {
    let mut out = String::new();
    out.push_str("# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n# TYPE kubelet_running_pods gauge\n");
    out.push_str(&format!("kubelet_running_pods {running_pods}\n"));
    out.push_str("# HELP kubelet_running_containers [ALPHA] Number of containers currently running\n# TYPE kubelet_running_containers gauge\n");
    out.push_str(&format!(
        "kubelet_running_containers{{container_state=\"running\"}} {running_containers}\n"
    ));
    out.push_str("# HELP kubelet_http_requests_total [ALPHA] Number of the http requests received since the server started\n# TYPE kubelet_http_requests_total counter\n");
    for (path, n) in requests {
        out.push_str(&format!(
            "kubelet_http_requests_total{{path=\"{path}\"}} {n}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerStats;
    use rkube_containers::runtime::Stats;

    #[test]
    fn rates_need_two_samples_far_enough_apart() {
        let r = CpuRates::default();
        let t0 = Instant::now();
        assert_eq!(r.observe("a", 1_000, t0), None);
        assert_eq!(r.observe("a", 2_000, t0 + Duration::from_millis(10)), None);
        assert_eq!(
            r.observe("a", 500_001_000, t0 + Duration::from_secs(1)),
            Some(500_000_000)
        );
    }

    #[test]
    fn summary_and_resource_metrics_shape() {
        let pods = vec![PodStats {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            start_time: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            containers: vec![ContainerStats {
                name: "c".into(),
                start_time: None,
                stats: Stats {
                    cpu_usage_ns: 2_000_000_000,
                    memory_working_set: 4096,
                    memory_usage: 8192,
                },
            }],
        }];
        let node = NodeStats {
            cpu_usage_ns: 5,
            memory_total: 10,
            memory_available: 4,
            memory_working_set: 6,
        };
        let s = summary("n1", UNIX_EPOCH, &node, &pods, &CpuRates::default());
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["pods"][0]["podRef"]["name"], "web");
        assert_eq!(
            s["pods"][0]["containers"][0]["memory"]["workingSetBytes"],
            4096
        );
        assert_eq!(s["pods"][0]["startTime"], "2023-11-14T22:13:20Z");
        let m = resource_metrics(&node, &pods);
        assert!(m.contains("container_cpu_usage_seconds_total{container=\"c\",namespace=\"default\",pod=\"web\"} 2 "));
        assert!(m.contains("node_memory_working_set_bytes 6 "));
    }
}
