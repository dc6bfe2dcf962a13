//! Taint-based eviction: pods on a node with NoExecute taints they do not
//! tolerate are deleted, at once or after their tolerationSeconds.
//!
//! Upstream counterpart: `pkg/controller/tainteviction`
//! (taint_eviction.go, the "taint-eviction-controller"). The API server's
//! DefaultTolerationSeconds admission gives every pod 300 s tolerations of
//! not-ready and unreachable, so an unreachable node's pods go five
//! minutes after the taint unless they say otherwise. The eviction time
//! is counted from the taint's `timeAdded`, so a restarted controller
//! keeps the same deadline. Before deleting, the pod gets a
//! DisruptionTarget condition saying why, as upstream.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What to do with one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Keep,
    EvictNow,
    /// Evict after this long, unless the taints go first.
    EvictIn(Duration),
}

/// Whether `toleration` tolerates `taint` (`Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            // An empty key only goes with Exists.
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The decision for a pod with `tolerations` on a node with `taints` at
/// `now` (`processPodOnNode` with `getMinTolerationTime`).
pub fn decide(tolerations: &[Toleration], taints: &[Taint], now: Timestamp) -> Decision {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Decision::Keep;
    }
    // The shortest tolerationSeconds among the tolerations in use; None
    // while every taint is tolerated forever.
    let mut min: Option<i64> = None;
    for taint in &no_execute {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Decision::EvictNow;
        }
        for t in used {
            if let Some(secs) = t.toleration_seconds {
                min = Some(min.map_or(secs, |m| m.min(secs)));
            }
        }
    }
    let Some(secs) = min else {
        return Decision::Keep;
    };
    if secs <= 0 {
        return Decision::EvictNow;
    }
    // Counted from the newest NoExecute taint.
    let since = no_execute
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .max()
        .unwrap_or(now);
    let deadline = since + SignedDuration::from_secs(secs);
    let left = deadline.duration_since(now);
    if left.is_negative() || left.is_zero() {
        Decision::EvictNow
    } else {
        Decision::EvictIn(left.unsigned_abs())
    }
}

/// The pod's tolerations.
pub fn tolerations_of(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn taint(key: &str, effect: &str, added: Option<Timestamp>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: added.map(Time),
            value: None,
        }
    }

    fn tol(key: &str, op: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn untolerated_no_execute_taints_evict_at_once() {
        let now = Timestamp::now();
        let t = [taint(
            "node.kubernetes.io/unreachable",
            "NoExecute",
            Some(now),
        )];
        assert_eq!(decide(&[], &t, now), Decision::EvictNow);
        let ns = [taint(
            "node.kubernetes.io/unreachable",
            "NoSchedule",
            Some(now),
        )];
        assert_eq!(decide(&[], &ns, now), Decision::Keep);
    }

    #[test]
    fn toleration_seconds_count_from_the_taint() {
        let now = Timestamp::now();
        let added = now - SignedDuration::from_secs(100);
        let t = [taint(
            "node.kubernetes.io/unreachable",
            "NoExecute",
            Some(added),
        )];
        let tols = [tol("node.kubernetes.io/unreachable", "Exists", Some(300))];
        assert_eq!(
            decide(&tols, &t, now),
            Decision::EvictIn(Duration::from_secs(200))
        );
        let later = now + SignedDuration::from_secs(250);
        assert_eq!(decide(&tols, &t, later), Decision::EvictNow);
        // Tolerated forever: stays.
        let forever = [tol("node.kubernetes.io/unreachable", "Exists", None)];
        assert_eq!(decide(&forever, &t, later), Decision::Keep);
    }

    #[test]
    fn the_shortest_toleration_in_use_wins_and_wildcards_match() {
        let now = Timestamp::now();
        let t = [
            taint("node.kubernetes.io/unreachable", "NoExecute", Some(now)),
            taint("node.kubernetes.io/not-ready", "NoExecute", Some(now)),
        ];
        let tols = [
            tol("node.kubernetes.io/unreachable", "Exists", Some(60)),
            tol("node.kubernetes.io/not-ready", "Exists", Some(30)),
        ];
        assert_eq!(
            decide(&tols, &t, now),
            Decision::EvictIn(Duration::from_secs(30))
        );
        let all = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert_eq!(decide(&[all], &t, now), Decision::Keep);
        let wrong_value = Toleration {
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Equal".into()),
            value: Some("x".into()),
            ..Toleration::default()
        };
        assert!(!tolerates(&wrong_value, &t[0]));
    }
}
