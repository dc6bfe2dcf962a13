use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::status::*;

/// One Deployment "web" (uid d1) of `replicas`, its ReplicaSet rs1.
struct OneDeployment {
    replicas: i32,
}

impl Finder for OneDeployment {
    fn scale(&self, _ns: &str, kind: &str, name: &str, uid: &str) -> Option<Scale> {
        (kind == "ReplicaSet" && name == "web-abc" && uid == "rs1").then(|| Scale {
            uid: "d1".into(),
            replicas: self.replicas,
        })
    }
}

fn pod(name: &str, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web-abc", "uid": "rs1", "controller": true}]},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    });
    crate::endpoints::tests::merge(&mut v, extra);
    Arc::new(serde_json::from_value(v).unwrap())
}

fn pdb(spec: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "generation": 2},
        "spec": spec, "status": status
    }))
    .unwrap()
}

fn three_pods() -> Vec<Arc<Pod>> {
    vec![
        pod("a", true, json!({})),
        pod("b", true, json!({})),
        pod("c", false, json!({})),
    ]
}

#[test]
fn percentages_round_up_and_bad_strings_are_errors() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as I;
    assert_eq!(scaled_value(&I::String("50%".into()), 3, true), Ok(2));
    assert_eq!(scaled_value(&I::String("50%".into()), 3, false), Ok(1));
    assert_eq!(scaled_value(&I::Int(4), 3, true), Ok(4));
    assert!(scaled_value(&I::String("half".into()), 3, true).is_err());
}

#[test]
fn min_available_int_counts_the_selected_pods() {
    let finder = OneDeployment { replicas: 3 };
    let p = pdb(json!({"minAvailable": 2}), json!({}));
    let (s, _) = desired_status(&p, &three_pods(), &finder, Timestamp::now());
    assert_eq!(
        (
            s.current_healthy,
            s.desired_healthy,
            s.expected_pods,
            s.disruptions_allowed
        ),
        (2, 2, 3, 0)
    );
    assert_eq!(s.observed_generation, Some(2));
    let c = &s.conditions.unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        ("DisruptionAllowed", "False", "InsufficientPods")
    );
}

#[test]
fn max_unavailable_resolves_against_the_deployment_scale() {
    let finder = OneDeployment { replicas: 4 };
    let p = pdb(json!({"maxUnavailable": "25%"}), json!({}));
    let pods = vec![
        pod("a", true, json!({})),
        pod("b", true, json!({})),
        pod("c", true, json!({})),
        pod("d", true, json!({})),
    ];
    let (s, _) = desired_status(&p, &pods, &finder, Timestamp::now());
    assert_eq!(
        (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
        (4, 3, 1)
    );
    assert_eq!(s.conditions.unwrap()[0].reason, "SufficientPods");
}

#[test]
fn pods_without_a_known_controller_fail_safe() {
    let finder = OneDeployment { replicas: 3 };
    let p = pdb(
        json!({"minAvailable": "50%"}),
        json!({"disruptionsAllowed": 1}),
    );
    let orphan = pod("x", true, json!({"metadata": {"ownerReferences": null}}));
    let (s, _) = desired_status(&p, &[orphan], &finder, Timestamp::now());
    assert_eq!(s.disruptions_allowed, 0);
    let c = &s.conditions.unwrap()[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "SyncFailed")
    );
    assert!(
        c.message.contains("found no controller ref"),
        "{}",
        c.message
    );
}

#[test]
fn evicted_pods_do_not_count_until_the_timeout() {
    let finder = OneDeployment { replicas: 3 };
    let now = Timestamp::now();
    let evicted_at = now - SignedDuration::from_secs(30);
    let p = pdb(
        json!({"minAvailable": 1}),
        json!({"disruptedPods": {"a": evicted_at.to_string(), "gone": evicted_at.to_string()}}),
    );
    let (s, recheck) = desired_status(&p, &three_pods(), &finder, now);
    // a is pending deletion: only b is healthy; "gone" has no pod any more.
    assert_eq!(s.current_healthy, 1);
    assert_eq!(
        s.disrupted_pods
            .as_ref()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(recheck.map(|d| d.as_secs()), Some(90));
    // Two minutes later the eviction is forgotten and a counts again.
    let later = now + SignedDuration::from_secs(100);
    let (s, recheck) = desired_status(&p, &three_pods(), &finder, later);
    assert_eq!((s.current_healthy, s.disruptions_allowed), (2, 1));
    assert!(s.disrupted_pods.is_none() && recheck.is_none());
}

#[test]
fn the_transition_time_holds_while_the_condition_does() {
    let finder = OneDeployment { replicas: 3 };
    let p = pdb(json!({"minAvailable": 1}), json!({}));
    let t0 = Timestamp::now();
    let (s, _) = desired_status(&p, &three_pods(), &finder, t0);
    let mut again = p.clone();
    again.status = Some(s.clone());
    let later = t0 + SignedDuration::from_secs(5);
    let (s2, _) = desired_status(&again, &three_pods(), &finder, later);
    assert_eq!(s, s2, "nothing changed, nothing to write");
}
