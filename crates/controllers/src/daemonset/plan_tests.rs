use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn fit(run: bool, stay: bool) -> Fit {
    Fit {
        should_run: run,
        should_continue_running: stay,
    }
}

fn pod(name: &str, hash: &str, ready: bool, age_s: i64) -> Arc<Pod> {
    let now = jiff::Timestamp::from_second(1_000_000).unwrap();
    let since = now - jiff::SignedDuration::from_secs(age_s);
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([(HASH_LABEL.to_string(), hash.to_string())].into()),
            creation_timestamp: Some(Time(since)),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(since)),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    })
}

fn snap(nodes: &[(&str, Fit)], pods: &[(&str, Arc<Pod>)], strategy: Strategy) -> Snapshot {
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for (n, p) in pods {
        by_node.entry(n.to_string()).or_default().push(p.clone());
    }
    Snapshot {
        nodes: nodes.iter().map(|(n, f)| (n.to_string(), *f)).collect(),
        pods: by_node,
        hash: "new".into(),
        strategy,
        min_ready_seconds: 0,
        generation: Some(2),
        now: jiff::Timestamp::from_second(1_000_000).unwrap(),
    }
}

const ROLL: Strategy = Strategy::RollingUpdate {
    max_unavailable: 1,
    max_surge: 0,
};

#[test]
fn one_pod_per_eligible_node() {
    let s = snap(
        &[
            ("a", fit(true, true)),
            ("b", fit(true, true)),
            ("c", fit(false, false)),
        ],
        &[
            ("a", pod("p-a", "new", true, 10)),
            ("c", pod("p-c", "new", true, 10)),
        ],
        ROLL,
    );
    let plan = reconcile(&s);
    assert_eq!(plan.create, vec!["b".to_string()]);
    assert_eq!(plan.delete, vec!["p-c".to_string()]);
    let st = status(&s, None);
    assert_eq!(st.desired_number_scheduled, 2);
    assert_eq!(st.current_number_scheduled, 1);
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.number_ready, 1);
    assert_eq!(st.number_available, Some(1));
    assert_eq!(st.number_unavailable, Some(1));
    assert_eq!(st.updated_number_scheduled, Some(1));
    assert_eq!(st.observed_generation, Some(2));
}

#[test]
fn duplicates_keep_the_oldest_and_gone_nodes_lose_their_pods() {
    let s = snap(
        &[("a", fit(true, true))],
        &[
            ("a", pod("young", "new", true, 1)),
            ("a", pod("old", "new", true, 100)),
            ("gone", pod("orphan", "new", true, 5)),
        ],
        ROLL,
    );
    let mut plan = reconcile(&s);
    plan.delete.sort();
    assert_eq!(plan.delete, vec!["orphan".to_string(), "young".to_string()]);
    assert!(plan.create.is_empty());
}

#[test]
fn no_schedule_taint_keeps_running_pods_but_places_no_new_ones() {
    let s = snap(
        &[("a", fit(false, true)), ("b", fit(false, true))],
        &[("a", pod("p-a", "new", true, 10))],
        ROLL,
    );
    assert_eq!(reconcile(&s), Plan::default());
    assert_eq!(status(&s, None).number_misscheduled, 1);
}

#[test]
fn rolling_update_deletes_old_pods_within_max_unavailable() {
    let nodes = [
        ("a", fit(true, true)),
        ("b", fit(true, true)),
        ("c", fit(true, true)),
    ];
    let s = snap(
        &nodes,
        &[
            ("a", pod("p-a", "old", true, 10)),
            ("b", pod("p-b", "old", true, 10)),
            ("c", pod("p-c", "old", true, 10)),
        ],
        ROLL,
    );
    assert_eq!(reconcile(&s).delete.len(), 1);
    // With one node already missing its pod the budget is spent.
    let s = snap(
        &nodes,
        &[
            ("a", pod("p-a", "old", true, 10)),
            ("b", pod("p-b", "old", true, 10)),
        ],
        ROLL,
    );
    let plan = reconcile(&s);
    assert_eq!(plan.create, vec!["c".to_string()]);
    assert!(plan.delete.is_empty());
    // Unavailable old pods go regardless of the budget.
    let s = snap(
        &nodes,
        &[
            ("a", pod("p-a", "old", false, 10)),
            ("b", pod("p-b", "old", false, 10)),
        ],
        ROLL,
    );
    assert_eq!(reconcile(&s).delete.len(), 2);
    // OnDelete never replaces.
    let s = snap(
        &nodes[..1],
        &[("a", pod("p-a", "old", true, 10))],
        Strategy::OnDelete,
    );
    assert_eq!(reconcile(&s), Plan::default());
}

#[test]
fn surge_starts_the_new_pod_first_and_deletes_the_old_once_available() {
    let surge = Strategy::RollingUpdate {
        max_unavailable: 0,
        max_surge: 1,
    };
    let nodes = [("a", fit(true, true)), ("b", fit(true, true))];
    let s = snap(
        &nodes,
        &[
            ("a", pod("a-old", "old", true, 10)),
            ("b", pod("b-old", "old", true, 10)),
        ],
        surge,
    );
    let plan = reconcile(&s);
    assert_eq!(plan.create, vec!["a".to_string()]);
    assert!(plan.delete.is_empty());
    let s = snap(
        &nodes,
        &[
            ("a", pod("a-old", "old", true, 10)),
            ("a", pod("a-new", "new", false, 1)),
            ("b", pod("b-old", "old", true, 10)),
        ],
        surge,
    );
    assert_eq!(reconcile(&s), Plan::default());
    let s = snap(
        &nodes,
        &[
            ("a", pod("a-old", "old", true, 10)),
            ("a", pod("a-new", "new", true, 1)),
            ("b", pod("b-old", "old", true, 10)),
        ],
        surge,
    );
    // The old pod beside an available new one goes; it takes no surge
    // budget, so the next node starts its new pod at once.
    let plan = reconcile(&s);
    assert_eq!(plan.delete, vec!["a-old".to_string()]);
    assert_eq!(plan.create, vec!["b".to_string()]);
}

#[test]
fn percentages_round_up() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 10, 1), 3);
    assert_eq!(scaled(Some(&IntOrString::Int(2)), 10, 1), 2);
    assert_eq!(scaled(None, 10, 1), 1);
}
