//! Which pod goes first when the node is short of a resource: pods using
//! more than they requested, then lower priority, then the larger excess
//! over the request (for pids: priority, then process count).
//!
//! Upstream counterpart: `pkg/kubelet/eviction/helpers.go`
//! (`rankMemoryPressure`, `rankDiskPressureFunc`, `rankPIDPressure`,
//! `exceedMemoryRequests`, `priority`, `memory`, `disk`, `process`).

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

use super::threshold::Resource;
use crate::cm::pod_total;

/// Priority at and above which a pod is critical (upstream's
/// `SystemCriticalPriority`): the eviction manager leaves it alone.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A pod with its measured usage.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub pod: &'a Pod,
    /// Working set of all its containers, bytes.
    pub memory: i64,
    /// Writable layers, logs and disk-backed emptyDirs, bytes.
    pub disk: i64,
    /// Processes in its cgroup.
    pub processes: i64,
}

fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Whether the eviction manager must not pick this pod.
pub fn critical(p: &Pod) -> bool {
    priority(p) >= SYSTEM_CRITICAL_PRIORITY
}

fn usage_and_request(c: &Candidate, resource: Resource) -> (i64, i64) {
    match resource {
        Resource::Memory => (c.memory, pod_total(c.pod, false, "memory")),
        _ => (c.disk, pod_total(c.pod, false, "ephemeral-storage")),
    }
}

/// Ordering for one resource: `Less` means evicted first.
fn compare(a: &Candidate, b: &Candidate, resource: Resource) -> Ordering {
    if resource == Resource::Pids {
        return priority(a.pod)
            .cmp(&priority(b.pod))
            .then(b.processes.cmp(&a.processes));
    }
    let (ua, ra) = usage_and_request(a, resource);
    let (ub, rb) = usage_and_request(b, resource);
    // Exceeding its request first.
    (ub > rb)
        .cmp(&(ua > ra))
        .then(priority(a.pod).cmp(&priority(b.pod)))
        .then((ub - rb).cmp(&(ua - ra)))
}

/// Sorts candidates, first to evict first.
pub fn rank(candidates: &mut [Candidate], resource: Resource) {
    candidates.sort_by(|a, b| compare(a, b, resource));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32, requests: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"priority": priority, "containers": [
                {"name": "c", "resources": {"requests": requests}}
            ]}
        }))
        .unwrap()
    }

    fn names(c: &[Candidate]) -> Vec<String> {
        c.iter()
            .map(|c| c.pod.metadata.name.clone().unwrap())
            .collect()
    }

    fn cand(pod: &Pod, memory: i64, disk: i64, processes: i64) -> Candidate<'_> {
        Candidate {
            pod,
            memory,
            disk,
            processes,
        }
    }

    #[test]
    fn memory_exceeding_requests_then_priority_then_excess() {
        let best_effort = pod("best-effort", 0, json!({}));
        let within = pod("within", 0, json!({"memory": "100Mi"}));
        let over_high = pod("over-high", 1000, json!({"memory": "10Mi"}));
        let over_big = pod("over-big", 0, json!({"memory": "10Mi"}));
        let mut c = vec![
            cand(&within, 50 << 20, 0, 1),
            cand(&over_high, 500 << 20, 0, 1),
            cand(&best_effort, 20 << 20, 0, 1),
            cand(&over_big, 300 << 20, 0, 1),
        ];
        rank(&mut c, Resource::Memory);
        assert_eq!(
            names(&c),
            ["over-big", "best-effort", "over-high", "within"]
        );
    }

    #[test]
    fn disk_uses_ephemeral_storage_requests() {
        let a = pod("a", 0, json!({"ephemeral-storage": "1Gi"}));
        let b = pod("b", 0, json!({}));
        let mut c = vec![cand(&a, 0, 100 << 20, 0), cand(&b, 0, 1 << 20, 0)];
        rank(&mut c, Resource::EphemeralStorage);
        assert_eq!(names(&c), ["b", "a"]);
    }

    #[test]
    fn pids_by_priority_then_process_count() {
        let low = pod("low", -10, json!({}));
        let many = pod("many", 0, json!({}));
        let few = pod("few", 0, json!({}));
        let mut c = vec![
            cand(&few, 0, 0, 2),
            cand(&many, 0, 0, 50),
            cand(&low, 0, 0, 1),
        ];
        rank(&mut c, Resource::Pids);
        assert_eq!(names(&c), ["low", "many", "few"]);
        assert!(critical(&pod("sys", SYSTEM_CRITICAL_PRIORITY, json!({}))));
        assert!(!critical(&few));
    }
}
