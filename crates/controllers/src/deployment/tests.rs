//! Unit tests of the pure Deployment logic: fenceposts, rolling-update
//! steps, proportional scaling, status and conditions, revisions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet, ReplicaSetSpec,
    ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::status::{self, PROGRESSING};
use super::{rolling, util};

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn int(i: i32) -> IntOrString {
    IntOrString::Int(i)
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            template: template("v2"),
            progress_deadline_seconds: Some(600),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn rs(name: &str, age_secs: i64, replicas: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(now() - SignedDuration::from_secs(age_secs))),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(template(name)),
            ..ReplicaSetSpec::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            available_replicas: Some(available),
            ready_replicas: Some(available),
            ..ReplicaSetStatus::default()
        }),
    }
}

#[test]
fn percentages_round_surge_up_and_unavailable_down() {
    let d = deployment(10, pct("25%"), pct("25%"));
    assert_eq!(util::fenceposts(&d).unwrap(), (3, 2));
    let d = deployment(1, pct("25%"), pct("25%"));
    assert_eq!(util::fenceposts(&d).unwrap(), (1, 0));
    // Both zero would never progress: one may be unavailable.
    let d = deployment(3, int(0), pct("10%"));
    assert_eq!(util::fenceposts(&d).unwrap(), (0, 1));
    let d = deployment(3, pct("x"), int(1));
    assert!(util::fenceposts(&d).is_err());
    // maxUnavailable never exceeds the replicas.
    let d = deployment(2, int(1), int(5));
    assert_eq!(util::max_unavailable(&d), 2);
}

#[test]
fn new_replica_set_grows_within_the_surge() {
    let d = deployment(10, pct("25%"), pct("25%"));
    let old = rs("old", 100, 10, 10);
    let new = rs("new", 1, 0, 0);
    // 10 + 3 surge - 10 existing = 3.
    assert_eq!(
        rolling::reconcile_new(&d, &[&old, &new], &new),
        Some(("new".into(), 3))
    );
    let new = rs("new", 1, 3, 0);
    let old = rs("old", 100, 10, 10);
    assert_eq!(rolling::reconcile_new(&d, &[&old, &new], &new), None);
    // Never past spec.replicas, and shrinks when above it.
    let new = rs("new", 1, 12, 12);
    assert_eq!(
        rolling::reconcile_new(&d, &[&new], &new),
        Some(("new".into(), 10))
    );
}

#[test]
fn old_replica_sets_shrink_keeping_min_available() {
    let d = deployment(10, pct("25%"), pct("25%"));
    // min available 8; 10 old available + 3 new unavailable.
    let old = rs("old", 100, 10, 10);
    let new = rs("new", 1, 3, 0);
    assert_eq!(
        rolling::reconcile_old(&d, &[&old], &new),
        vec![("old".to_string(), 8)]
    );
    // New pods became available: the old set can give up three more.
    let old = rs("old", 100, 8, 8);
    let new = rs("new", 1, 3, 3);
    assert_eq!(
        rolling::reconcile_old(&d, &[&old], &new),
        vec![("old".to_string(), 5)]
    );
}

#[test]
fn unhealthy_old_replicas_go_first() {
    let d = deployment(4, int(1), int(0));
    let old = rs("old", 100, 4, 2);
    let new = rs("new", 1, 1, 1);
    // 5 total - 4 min available - 0 new unavailable = 1 may go: an unhealthy one.
    assert_eq!(
        rolling::reconcile_old(&d, &[&old], &new),
        vec![("old".to_string(), 3)]
    );
}

#[test]
fn scaling_one_active_set_takes_it_all() {
    let d = deployment(5, pct("25%"), pct("25%"));
    let only = rs("only", 10, 3, 3);
    assert_eq!(
        rolling::scale(&d, Some(&only), &[]),
        vec![("only".to_string(), 5)]
    );
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    // Upstream's example: 10 replicas (surge 3) mid-rollout, 8 old + 5
    // new, scaled to 20 (surge 5): 25 allowed, 12 to add.
    let mut d = deployment(20, pct("25%"), pct("25%"));
    let mut old = rs("old", 100, 8, 8);
    let mut new = rs("new", 1, 5, 0);
    for r in [&mut old, &mut new] {
        r.metadata.annotations = Some(BTreeMap::from([(
            util::MAX_REPLICAS.to_string(),
            "13".to_string(),
        )]));
    }
    d.status = Some(DeploymentStatus {
        replicas: Some(13),
        ..DeploymentStatus::default()
    });
    let steps = rolling::scale(&d, Some(&new), &[&old]);
    let total: i32 = steps.iter().map(|s| s.1).sum();
    assert_eq!(total, 25);
    // 8 * 25/13 = 15.4 -> 15; 5 * 25/13 = 9.6 -> 10.
    assert!(steps.contains(&("old".to_string(), 15)), "{steps:?}");
    assert!(steps.contains(&("new".to_string(), 10)), "{steps:?}");
}

#[test]
fn saturated_new_set_lets_old_ones_go() {
    let d = deployment(3, pct("25%"), pct("25%"));
    let old = rs("old", 100, 1, 1);
    let mut new = rs("new", 1, 3, 3);
    new.metadata.annotations = Some(BTreeMap::from([(
        util::DESIRED_REPLICAS.to_string(),
        "3".to_string(),
    )]));
    assert_eq!(
        rolling::scale(&d, Some(&new), &[&old]),
        vec![("old".to_string(), 0)]
    );
}

#[test]
fn new_replica_set_is_found_ignoring_the_hash_label() {
    let d = deployment(1, int(1), int(0));
    let mut a = rs("a", 10, 1, 1);
    let mut t = template("v2");
    t.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert("pod-template-hash".into(), "abc".into());
    a.spec.as_mut().unwrap().template = Some(t);
    let b = rs("b", 20, 1, 1);
    assert_eq!(util::find_new(&d, &[b, a]), Some(1));
}

#[test]
fn revisions_move_forward_and_keep_history() {
    let d = deployment(2, int(1), int(0));
    let mut r = rs("r", 10, 2, 2);
    r.metadata.annotations = Some(BTreeMap::from([(
        util::REVISION.to_string(),
        "1".to_string(),
    )]));
    assert!(util::set_new_rs_annotations(&d, &mut r, 4, true));
    let ann = r.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[util::REVISION], "4");
    assert_eq!(ann[util::REVISION_HISTORY], "1");
    assert!(!util::set_new_rs_annotations(&d, &mut r, 4, true));
    let mut fresh = rs("f", 1, 0, 0);
    let mut dd = deployment(2, int(1), int(0));
    dd.metadata.annotations = Some(BTreeMap::from([
        ("kubernetes.io/change-cause".to_string(), "v2".to_string()),
        (
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{}".to_string(),
        ),
    ]));
    util::set_new_rs_annotations(&dd, &mut fresh, 1, false);
    let ann = fresh.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann["kubernetes.io/change-cause"], "v2");
    assert!(!ann.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(
        (
            ann[util::DESIRED_REPLICAS].as_str(),
            ann[util::MAX_REPLICAS].as_str()
        ),
        ("2", "3")
    );
}

#[test]
fn status_sums_replica_sets_and_reports_availability() {
    let d = deployment(4, int(1), int(1));
    let old = rs("old", 100, 2, 2);
    let new = rs("new", 1, 3, 1);
    let s = status::calculate(&d, &[&old, &new], Some(&new), now());
    assert_eq!(s.replicas, Some(5));
    assert_eq!(s.updated_replicas, Some(3));
    assert_eq!(s.available_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, Some(2));
    let avail = status::condition(&s, "Available").unwrap();
    assert_eq!(
        (avail.status.as_str(), avail.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    let s = status::calculate(&d, &[&rs("new", 1, 4, 1)], None, now());
    assert_eq!(status::condition(&s, "Available").unwrap().status, "False");
}

#[test]
fn progressing_then_complete_then_timed_out() {
    let mut d = deployment(2, int(1), int(0));
    let new = rs("web-1", 1, 2, 1);
    let s = status::rollout(&d, &[&new], Some(&new), now());
    let p = status::condition(&s, PROGRESSING).unwrap();
    assert_eq!(p.reason.as_deref(), Some("ReplicaSetUpdated"));
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"web-1\" is progressing.")
    );
    d.status = Some(s);
    let done = rs("web-1", 1, 2, 2);
    let s = status::rollout(&d, &[&done], Some(&done), now());
    let p = status::condition(&s, PROGRESSING).unwrap();
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
    assert_eq!(status::recheck_after(&d, &s, now()), None);
    // No progress for longer than the deadline.
    let mut stuck = deployment(2, int(1), int(0));
    let mut st = DeploymentStatus::default();
    let mut c = status::new_condition(
        PROGRESSING,
        "True",
        "ReplicaSetUpdated",
        "x".into(),
        now() - SignedDuration::from_secs(700),
    );
    c.last_transition_time = c.last_update_time.clone();
    status::set_condition(&mut st, c);
    st.updated_replicas = Some(2);
    st.replicas = Some(2);
    st.available_replicas = Some(1);
    st.ready_replicas = Some(1);
    stuck.status = Some(st);
    let s = status::rollout(&stuck, &[&new], Some(&new), now());
    let p = status::condition(&s, PROGRESSING).unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
}

#[test]
fn paused_and_resumed_show_on_progressing() {
    let mut d = deployment(2, int(1), int(0));
    d.spec.as_mut().unwrap().paused = Some(true);
    let mut st = DeploymentStatus::default();
    assert!(status::paused_conditions(&d, &mut st, now()));
    assert_eq!(
        status::condition(&st, PROGRESSING)
            .unwrap()
            .reason
            .as_deref(),
        Some("DeploymentPaused")
    );
    assert!(!status::paused_conditions(&d, &mut st, now()));
    d.spec.as_mut().unwrap().paused = Some(false);
    assert!(status::paused_conditions(&d, &mut st, now()));
    assert_eq!(
        status::condition(&st, PROGRESSING)
            .unwrap()
            .reason
            .as_deref(),
        Some("DeploymentResumed")
    );
}
