use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_000_000).unwrap()
}

fn pod(ord: i32, rev: &str, phase: &str, ready: bool) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(format!("web-{ord}")),
            uid: Some(format!("uid-{ord}-{rev}")),
            labels: Some([(HASH_LABEL.to_string(), rev.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(now())),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    })
}

fn ready(ord: i32, rev: &str) -> Arc<Pod> {
    pod(ord, rev, "Running", true)
}

fn snap(replicas: i32, ordered: bool, pods: Vec<Arc<Pod>>) -> Snapshot {
    Snapshot {
        replicas,
        start: 0,
        ordered,
        pods: pods
            .into_iter()
            .map(|p| {
                (
                    ordinal("web", p.metadata.name.as_deref().unwrap()).unwrap(),
                    p,
                )
            })
            .collect(),
        partition: Some(0),
        current_revision: "r1".into(),
        update_revision: "r1".into(),
        min_ready_seconds: 0,
        max_unavailable: None,
        now: now(),
    }
}

fn deleted(plan: &Plan) -> Vec<&str> {
    plan.delete.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn ordinals_parse_only_the_sets_own_names() {
    assert_eq!(ordinal("web", "web-0"), Some(0));
    assert_eq!(ordinal("web", "web-12"), Some(12));
    assert_eq!(ordinal("web", "web-01"), None);
    assert_eq!(ordinal("web", "webby-1"), None);
    assert_eq!(ordinal("web", "web-x"), None);
}

#[test]
fn ordered_ready_creates_one_at_a_time_waiting_for_readiness() {
    assert_eq!(reconcile(&snap(3, true, vec![])).create, vec![(0, true)]);
    let s = snap(3, true, vec![pod(0, "r1", "Pending", false)]);
    assert_eq!(reconcile(&s), Plan::default());
    let s = snap(3, true, vec![ready(0, "r1")]);
    assert_eq!(reconcile(&s).create, vec![(1, true)]);
    // Parallel creates every missing ordinal at once.
    let s = snap(3, false, vec![pod(0, "r1", "Pending", false)]);
    assert_eq!(reconcile(&s).create, vec![(1, true), (2, true)]);
}

#[test]
fn scale_down_goes_from_the_highest_ordinal() {
    let s = snap(
        1,
        true,
        vec![ready(0, "r1"), ready(1, "r1"), ready(2, "r1")],
    );
    assert_eq!(deleted(&reconcile(&s)), vec!["web-2"]);
    let s = snap(
        1,
        false,
        vec![ready(0, "r1"), ready(1, "r1"), ready(2, "r1")],
    );
    assert_eq!(deleted(&reconcile(&s)), vec!["web-2", "web-1"]);
    // Ordered scale-down waits while a replica is unhealthy.
    let s = snap(
        1,
        true,
        vec![pod(0, "r1", "Running", false), ready(1, "r1")],
    );
    assert_eq!(reconcile(&s), Plan::default());
    // An unhealthy condemned pod goes only when it is the first unhealthy.
    let unready = |o| pod(o, "r1", "Running", false);
    let s = snap(1, true, vec![ready(0, "r1"), unready(1), unready(2)]);
    assert_eq!(reconcile(&s), Plan::default());
    let s = snap(2, true, vec![ready(0, "r1"), ready(1, "r1"), unready(2)]);
    assert_eq!(deleted(&reconcile(&s)), vec!["web-2"]);
}

#[test]
fn failed_pods_are_recreated() {
    let s = snap(2, true, vec![ready(0, "r1"), pod(1, "r1", "Failed", false)]);
    assert_eq!(deleted(&reconcile(&s)), vec!["web-1"]);
}

#[test]
fn rolling_update_replaces_from_the_top_down_to_the_partition() {
    let pods = vec![ready(0, "r1"), ready(1, "r1"), ready(2, "r1")];
    let mut s = snap(3, true, pods);
    s.update_revision = "r2".into();
    assert_eq!(deleted(&reconcile(&s)), vec!["web-2"]);
    s.pods.insert(2, pod(2, "r2", "Pending", false));
    assert_eq!(reconcile(&s), Plan::default(), "waits for the new pod");
    s.pods.insert(2, ready(2, "r2"));
    assert_eq!(deleted(&reconcile(&s)), vec!["web-1"]);
    s.partition = Some(2);
    assert_eq!(
        reconcile(&s),
        Plan::default(),
        "ordinals below the partition keep r1"
    );
    s.pods.remove(&1);
    assert_eq!(reconcile(&s).create, vec![(1, false)]);
    s.partition = None;
    s.pods.insert(1, ready(1, "r1"));
    assert_eq!(
        reconcile(&s),
        Plan::default(),
        "OnDelete waits for the user"
    );
}

#[test]
fn status_counts_and_completes_the_rollout() {
    let mut s = snap(
        2,
        true,
        vec![ready(0, "r2"), pod(1, "r1", "Running", false)],
    );
    s.update_revision = "r2".into();
    let st = status(&s, Some(3), None);
    assert_eq!(st.replicas, 2);
    assert_eq!(st.ready_replicas, Some(1));
    assert_eq!(st.current_replicas, Some(1));
    assert_eq!(st.updated_replicas, Some(1));
    assert_eq!(st.current_revision.as_deref(), Some("r1"));
    assert_eq!(st.observed_generation, Some(3));
    s.pods.insert(1, ready(1, "r2"));
    let st = status(&s, Some(3), None);
    assert_eq!(st.current_revision.as_deref(), Some("r2"));
    assert_eq!(st.current_replicas, Some(2));
}

#[test]
fn max_unavailable_replaces_several_pods_at_once() {
    let pods = (0..5).map(|o| ready(o, "r1")).collect();
    let mut s = snap(5, false, pods);
    s.update_revision = "r2".into();
    s.max_unavailable = Some(2);
    assert_eq!(deleted(&reconcile(&s)), vec!["web-4", "web-3"]);
    // web-4 is back on r2 but not ready yet, web-3 is gone: no slot left.
    s.pods.insert(4, pod(4, "r2", "Pending", false));
    s.pods.remove(&3);
    assert_eq!(reconcile(&s).create, vec![(3, true)]);
    s.pods.insert(3, ready(3, "r2"));
    assert_eq!(deleted(&reconcile(&s)), vec!["web-2"], "one slot left");
    s.pods.insert(4, ready(4, "r2"));
    s.partition = Some(2);
    assert_eq!(
        deleted(&reconcile(&s)),
        vec!["web-2"],
        "the partition stops it"
    );
    // An old pod that is already unhealthy costs no extra slot.
    s.partition = Some(0);
    s.pods.insert(2, pod(2, "r1", "Running", false));
    assert_eq!(deleted(&reconcile(&s)), vec!["web-2", "web-1"]);
    // OrderedReady still waits for every replica to be healthy first.
    s.ordered = true;
    assert_eq!(reconcile(&s), Plan::default());
}
