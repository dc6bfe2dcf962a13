use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_string(), app.to_string())].into()
}

fn pod(name: &str, app: &str, owner: Option<&str>, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(app)),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    uid: o.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            creation_timestamp: Some(Time(now() - SignedDuration::from_secs(60))),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(now() - SignedDuration::from_secs(30))),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn selects_web(l: Option<&BTreeMap<String, String>>) -> bool {
    l.and_then(|l| l.get("app")).map(String::as_str) == Some("web")
}

fn snap<'a>(owned: Vec<&'a Pod>, orphans: Vec<&'a Pod>, desired: i32) -> Snapshot<'a> {
    Snapshot {
        uid: "rs",
        deleting: false,
        desired,
        min_ready_seconds: 0,
        selects: &selects_web,
        template_labels: None,
        owned,
        orphans,
        related: vec![],
        expectations_met: true,
        now: now(),
    }
}

#[test]
fn missing_pods_are_created_up_to_the_burst() {
    let a = pod("a", "web", Some("rs"), true);
    assert_eq!(plan(&snap(vec![&a], vec![], 3)).create, 2);
    assert_eq!(plan(&snap(vec![], vec![], 10_000)).create, BURST_REPLICAS);
}

#[test]
fn nothing_happens_while_expectations_are_unmet() {
    let mut s = snap(vec![], vec![], 3);
    s.expectations_met = false;
    let p = plan(&s);
    assert_eq!((p.create, p.delete.len()), (0, 0));
}

#[test]
fn excess_pods_are_deleted_unready_first() {
    let a = pod("a", "web", Some("rs"), true);
    let b = pod("b", "web", Some("rs"), false);
    let c = pod("c", "web", Some("rs"), true);
    let p = plan(&snap(vec![&a, &b, &c], vec![], 1));
    assert_eq!(p.delete.len(), 2);
    assert_eq!(p.delete[0], "b");
}

#[test]
fn matching_orphans_are_adopted_and_strays_released() {
    let mine = pod("mine", "web", Some("rs"), true);
    let stray = pod("stray", "db", Some("rs"), true);
    let orphan = pod("orphan", "web", None, true);
    let other = pod("other", "db", None, true);
    let p = plan(&snap(vec![&mine, &stray], vec![&orphan, &other], 2));
    assert_eq!(p.adopt, ["orphan"]);
    assert_eq!(p.release, ["stray"]);
    assert_eq!(p.claimed, ["mine", "orphan"]);
    assert_eq!((p.create, p.delete.len()), (0, 0));
}

#[test]
fn a_deleting_owner_adopts_and_creates_nothing() {
    let orphan = pod("orphan", "web", None, true);
    let mut s = snap(vec![], vec![&orphan], 3);
    s.deleting = true;
    let p = plan(&s);
    assert!(p.adopt.is_empty());
    assert_eq!(p.create, 0);
}

#[test]
fn terminal_pods_do_not_count() {
    let mut done = pod("done", "web", Some("rs"), false);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert_eq!(plan(&snap(vec![&done], vec![], 1)).create, 1);
}

#[test]
fn slow_start_doubles_batches() {
    assert_eq!(batches(0), Vec::<usize>::new());
    assert_eq!(batches(1), [1]);
    assert_eq!(batches(10), [1, 2, 4, 3]);
    assert_eq!(batches(15), [1, 2, 4, 8]);
}

#[test]
fn status_counts_ready_available_and_labeled() {
    let a = pod("a", "web", Some("rs"), true);
    let b = pod("b", "web", Some("rs"), false);
    let mut s = snap(vec![&a, &b], vec![], 2);
    let tl = labels("web");
    s.template_labels = Some(&tl);
    s.min_ready_seconds = 10;
    let st = status(&s, &[&a, &b], 4, &Status::default(), None, "t");
    assert_eq!(
        (
            st.replicas,
            st.fully_labeled_replicas,
            st.ready_replicas,
            st.available_replicas,
            st.observed_generation
        ),
        (2, 2, 1, 1, 4)
    );
    s.min_ready_seconds = 60;
    let st = status(&s, &[&a, &b], 4, &Status::default(), None, "t");
    assert_eq!(st.available_replicas, 0);
}

#[test]
fn replica_failure_condition_comes_and_goes() {
    let s = snap(vec![], vec![], 1);
    let failed = status(
        &s,
        &[],
        1,
        &Status::default(),
        Some(&Failure::Create("quota".into())),
        "t",
    );
    assert_eq!(failed.conditions.len(), 1);
    assert_eq!(failed.conditions[0].reason.as_deref(), Some("FailedCreate"));
    let healed = status(&s, &[], 1, &failed, None, "t");
    assert!(healed.conditions.is_empty());
}
