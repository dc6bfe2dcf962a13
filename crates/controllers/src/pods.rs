//! Pod helpers shared by the workload controllers: is a pod active, ready,
//! available; a pod made from a template for its owner; the hashes that
//! name ReplicaSets and ControllerRevisions; which pods go first when a
//! controller scales down.
//!
//! Upstream counterpart: `pkg/controller/controller_utils.go`
//! (`FilterActivePods`, `GetPodFromTemplate`, `ComputeHash`,
//! `ActivePodsWithRanks`), `pkg/api/v1/pod/util.go` (`IsPodReady`,
//! `IsPodAvailable`) and `pkg/controller/history` (`HashControllerRevision`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The label a Deployment puts on its ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The annotation that makes a pod cheaper or dearer to delete on scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Not yet succeeded or failed, and not being deleted: the pods a workload
/// controller counts as its replicas.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Succeeded or Failed: the pod's containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's Ready condition, if it has one.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready (None when not ready or not recorded).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = ready_condition(pod)?;
    (c.status == "True")
        .then(|| c.last_transition_time.as_ref().map(|t| t.0))
        .flatten()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream
/// `IsPodAvailable`): with zero, ready is enough; a ready pod without a
/// transition time counts as not yet available.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(since) => since + SignedDuration::from_secs(min_ready_seconds.into()) < now,
        None => false,
    }
}

/// How long until a ready pod becomes available, for requeueing; None if
/// it is not ready or already available.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<SignedDuration> {
    if min_ready_seconds <= 0 || !is_ready(pod) {
        return None;
    }
    let at = ready_since(pod)? + SignedDuration::from_secs(min_ready_seconds.into());
    (at >= now).then(|| at.duration_since(now) + SignedDuration::from_millis(1))
}

/// The ownerReference a controller puts on what it creates: controller
/// and blockOwnerDeletion both true, so foreground deletion waits for it.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controlling ownerReference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A pod for `owner` from `template` (upstream `GetPodFromTemplate`):
/// the template's labels, annotations, finalizers and spec, named by the
/// server from `<owner>-`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner_name: &str,
    owner: OwnerReference,
) -> Pod {
    let t = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name_prefix(owner_name)),
            namespace: Some(namespace.into()),
            labels: t.labels,
            annotations: t.annotations,
            finalizers: t.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// `<owner>-`, unless that is no valid pod name prefix (upstream then uses
/// the bare name and lets validation speak).
fn generate_name_prefix(owner: &str) -> String {
    let prefix = format!("{owner}-");
    // Room for the five random characters the server appends.
    if prefix.len() + 5 <= 253 {
        prefix
    } else {
        owner.to_string()
    }
}

/// FNV-1a, 32 bits: upstream's `fnv.New32a`.
pub fn fnv32a(data: &[u8], mut hash: u32) -> u32 {
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// FNV-1, 32 bits: upstream's `fnv.New32` (ControllerRevision names).
pub fn fnv32(data: &[u8], mut hash: u32) -> u32 {
    for b in data {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(*b);
    }
    hash
}

/// The FNV offset basis both variants start from.
pub const FNV_OFFSET: u32 = 0x811c_9dc5;

/// Upstream's `rand.SafeEncodeString`: every character mapped onto an
/// alphabet without vowels (no words) and without look-alikes (0/o, 1/l).
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template (upstream `ComputeHash`): FNV-1a
/// over the template plus the collision count, as a safe-encoded decimal.
/// Upstream hashes Go's struct dump, which no other language reproduces;
/// here the template's canonical JSON (fixed field order, sorted maps) is
/// hashed, which is just as stable. The hash only names ReplicaSets: they
/// are matched to templates by comparing the templates themselves.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv32a(&json, FNV_OFFSET);
    if let Some(c) = collision_count {
        // Upstream writes the count's 4 bytes into an 8-byte buffer.
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv32a(&buf, h);
    }
    safe_encode(&h.to_string())
}

/// A ControllerRevision's hash (upstream `HashControllerRevision`): FNV-1
/// over its raw data, then the decimal probe (collision count).
pub fn revision_hash(raw: &[u8], probe: Option<i32>) -> String {
    let mut h = fnv32(raw, FNV_OFFSET);
    if let Some(p) = probe {
        h = fnv32(p.to_string().as_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// For each pod, how many of `related` pods share its node (upstream
/// `getPodsRankedByRelatedPodsOnSameNode`): doubled-up pods go first.
pub fn ranks_by_node(pods: &[&Pod], related: &[&Pod]) -> Vec<usize> {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if let Some(n) = node_name(p) {
            *on_node.entry(n).or_default() += 1;
        }
    }
    pods.iter()
        .map(|p| node_name(p).map_or(0, |n| on_node.get(n).copied().unwrap_or(0)))
        .collect()
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// log2 of the age at `now` in nanoseconds, -1 for none or the future.
fn log_age(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.duration_since(t).as_nanos();
    if d > 0 {
        (d as f64).log2() as i64
    } else {
        -1
    }
}

/// A timestamp's place on scale-down: missing first, then by age in
/// powers of two, youngest first (upstream's LogarithmicScaleDown), so
/// pods of about the same age count as equal instead of always taking
/// the very youngest.
fn age_bucket(t: Option<Timestamp>, now: Timestamp) -> (bool, i64) {
    match t {
        None => (false, 0),
        Some(t) => (true, log_age(t, now)),
    }
}

/// Scale-down order (upstream `ActivePodsWithRanks.Less`): the pod that
/// compares Less is deleted first. `rank` is the number of related pods on
/// the pod's node.
///
/// Upstream's comparison is not a total order (pods in the same age
/// bucket are told apart by uid, pods with equal times fall through to the
/// next rule), which Go's sort tolerates and Rust's refuses. Here every
/// rule is a key of one lexicographic tuple: unassigned, phase, readiness,
/// deletion cost, pods on the node, ready age bucket, restarts, creation
/// age bucket, then uid.
pub fn compare_for_deletion(a: (&Pod, usize), b: (&Pod, usize), now: Timestamp) -> Ordering {
    deletion_key(a.0, a.1, now).cmp(&deletion_key(b.0, b.1, now))
}

type DeletionKey<'a> = (
    bool,
    u8,
    bool,
    i32,
    std::cmp::Reverse<usize>,
    (bool, i64),
    std::cmp::Reverse<i32>,
    (bool, i64),
    &'a str,
);

fn deletion_key(p: &Pod, rank: usize, now: Timestamp) -> DeletionKey<'_> {
    let ready = is_ready(p);
    (
        node_name(p).is_some(),
        phase_ordinal(p),
        ready,
        deletion_cost(p),
        std::cmp::Reverse(rank),
        if ready {
            age_bucket(ready_since(p), now)
        } else {
            (false, 0)
        },
        std::cmp::Reverse(max_restarts(p)),
        age_bucket(p.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        uid(p),
    )
}

/// The `n` pods to delete first when scaling down, by upstream's ranking.
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    n: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if n >= pods.len() {
        return pods.to_vec();
    }
    let ranks = ranks_by_node(pods, related);
    let mut ranked: Vec<(&'a Pod, usize)> = pods.iter().copied().zip(ranks).collect();
    ranked.sort_by_cached_key(|(p, rank)| deletion_key(p, *rank, now));
    ranked.into_iter().take(n).map(|(p, _)| p).collect()
}

/// Whether every label of `selector` (a plain map) is on `labels`.
pub fn map_selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a LabelSelector selects `labels` (upstream
/// `LabelSelectorAsSelector(...).Matches`): an empty selector selects
/// everything; an expression with an unknown operator selects nothing.
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(m) = &sel.match_labels {
        if !map_selects(m, Some(labels)) {
            return false;
        }
    }
    sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn ago(secs: i64) -> Time {
        Time(now() - SignedDuration::from_secs(secs))
    }

    fn pod(name: &str, node: &str, phase: &str, ready_secs: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(ago(3600)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_secs.map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(ago(s)),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b"", FNV_OFFSET), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a", FNV_OFFSET), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar", FNV_OFFSET), 0xbf9c_f968);
        assert_eq!(fnv32(b"a", FNV_OFFSET), 0x050c_5d7e);
        assert_eq!(fnv32(b"foobar", FNV_OFFSET), 0x31f0_b262);
    }

    #[test]
    fn safe_encoding_maps_digits_like_upstream() {
        // Digits land on "456789bcdf", the alphabet of every real
        // pod-template-hash.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        let h = template_hash(&PodTemplateSpec::default(), None);
        assert!(h.chars().all(|c| "456789bcdf".contains(c)), "{h}");
        assert_ne!(h, template_hash(&PodTemplateSpec::default(), Some(1)));
        assert_eq!(h, template_hash(&PodTemplateSpec::default(), None));
    }

    #[test]
    fn revision_hash_appends_the_decimal_probe() {
        let raw = br#"{"spec":{}}"#;
        let base = fnv32(raw, FNV_OFFSET);
        assert_eq!(revision_hash(raw, None), safe_encode(&base.to_string()));
        let probed = fnv32(b"12", base);
        assert_eq!(
            revision_hash(raw, Some(12)),
            safe_encode(&probed.to_string())
        );
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod("a", "n1", "Running", Some(10));
        assert!(is_available(&p, 0, now()));
        assert!(is_available(&p, 5, now()));
        assert!(!is_available(&p, 10, now()));
        assert!(!is_available(&p, 30, now()));
        let wait = until_available(&p, 30, now()).unwrap();
        assert!(wait > SignedDuration::from_secs(19) && wait <= SignedDuration::from_secs(21));
        assert!(!is_available(&pod("b", "n1", "Running", None), 0, now()));
    }

    #[test]
    fn active_excludes_terminal_and_deleting() {
        assert!(is_active(&pod("a", "", "Pending", None)));
        assert!(!is_active(&pod("a", "", "Succeeded", None)));
        assert!(!is_active(&pod("a", "", "Failed", None)));
        let mut p = pod("a", "", "Running", None);
        p.metadata.deletion_timestamp = Some(ago(1));
        assert!(!is_active(&p));
    }

    #[test]
    fn scale_down_takes_unassigned_pending_unready_first() {
        let unassigned = pod("unassigned", "", "Pending", None);
        let pending = pod("pending", "n1", "Pending", None);
        let unready = pod("unready", "n1", "Running", None);
        let young = pod("young", "n2", "Running", Some(5));
        let old = pod("old", "n3", "Running", Some(5000));
        let all = [&old, &young, &unready, &pending, &unassigned];
        let order: Vec<_> = pods_to_delete(&all, &all, 4, now())
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(order, ["unassigned", "pending", "unready", "young"]);
    }

    #[test]
    fn scale_down_prefers_doubled_up_and_cheap_pods() {
        let a = pod("a", "n1", "Running", Some(100));
        let b = pod("b", "n1", "Running", Some(100));
        let c = pod("c", "n2", "Running", Some(100));
        let all = [&c, &a, &b];
        let first = pods_to_delete(&all, &all, 1, now());
        assert_ne!(first[0].metadata.name.as_deref(), Some("c"));
        let mut dear = pod("a", "n1", "Running", Some(100));
        dear.metadata.annotations = Some([(DELETION_COST.to_string(), "100".to_string())].into());
        let all = [&dear, &c];
        let first = pods_to_delete(&all, &all, 1, now());
        assert_eq!(first[0].metadata.name.as_deref(), Some("c"));
    }

    #[test]
    fn scale_down_takes_restarting_pods_before_steady_ones() {
        let steady = pod("steady", "n1", "Running", Some(100));
        let mut crashy = pod("crashy", "n2", "Running", Some(100));
        crashy.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            restart_count: 4,
            ..ContainerStatus::default()
        }]);
        let all = [&steady, &crashy];
        assert_eq!(
            pods_to_delete(&all, &[], 1, now())[0]
                .metadata
                .name
                .as_deref(),
            Some("crashy")
        );
    }

    #[test]
    fn ranking_is_a_total_order_over_many_pods() {
        // Upstream's comparison is not transitive; a sort over it panics
        // in Rust. Ages spread over many buckets with a mix of everything.
        let pods: Vec<Pod> = (0..2000)
            .map(|i| {
                let mut p = pod(
                    &format!("p{i}"),
                    ["", "n1", "n2", "n3"][i % 4],
                    ["Pending", "Running", "Unknown"][i % 3],
                    (i % 5 != 0).then_some((i as i64 * 7919) % 100_000),
                );
                p.metadata.creation_timestamp = Some(ago((i as i64 * 104_729) % 1_000_000));
                p
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut ranked: Vec<(&Pod, usize)> = refs.iter().map(|p| (*p, 0)).collect();
        ranked.sort_by(|a, b| compare_for_deletion(*a, *b, now()));
        let picked = pods_to_delete(&refs, &refs, 100, now());
        assert_eq!(picked.len(), 100);
        assert!(picked.iter().all(|p| node_name(p).is_none()));
    }

    #[test]
    fn pod_from_template_carries_labels_and_controller_ref() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec::default()),
        };
        let owner = ObjectMeta {
            name: Some("web-abc".into()),
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        };
        let p = pod_from_template(
            &template,
            "ns",
            "web-abc",
            controller_ref("apps/v1", "ReplicaSet", &owner),
        );
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        let r = controller_of(&p.metadata).unwrap();
        assert_eq!((r.kind.as_str(), r.uid.as_str()), ("ReplicaSet", "u1"));
        assert_eq!(r.block_owner_deletion, Some(true));
        assert_eq!(p.metadata.labels.unwrap()["app"], "web");
    }

    #[test]
    fn label_selectors_match_like_upstream() {
        let labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "fe".into())].into();
        let sel = LabelSelector {
            match_labels: Some([("app".into(), "web".into())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["fe".into(), "be".into()]),
            }]),
        };
        assert!(selector_matches(&sel, Some(&labels)));
        let not = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&not, Some(&labels)));
        assert!(selector_matches(&LabelSelector::default(), None));
    }
}
