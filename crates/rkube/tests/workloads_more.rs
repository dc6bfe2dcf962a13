//! Job per-index retries and success policies, StatefulSet maxUnavailable,
//! node lifecycle disruption mode, and the scheduler's PDB-aware
//! preemption and namespaceSelector — with the real binary, real kubectl
//! and simulated nodes (or nodes applied by kubectl for the scheduler).
//!
//! Every server here runs the node lifecycle controller with short
//! timings (set once, before any server starts).

mod support;

use std::sync::Once;
use std::time::Duration;

use support::agent::Agent;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(90);

fn start(extra: &[&str]) -> Server {
    static ENV: Once = Once::new();
    ENV.call_once(|| {
        std::env::set_var("RKUBE_NODE_MONITOR_GRACE_PERIOD", "15s");
        std::env::set_var("RKUBE_NODE_MONITOR_PERIOD", "1s");
    });
    Server::start_with(extra)
}

/// A server and `nodes` simulated nodes, registered.
fn cluster(prefix: &str, nodes: u32) -> (Server, Agent) {
    let server = start(&[]);
    let agent = Agent::simulate_registered(&server, nodes, prefix, &[], WAIT);
    (server, agent)
}

fn wait_for(server: &Server, args: &[&str], path: &str, want: &str) {
    server.wait_jsonpath(WAIT, args, path, want, || server.log_tail(30));
}

fn condition(kind: &str, name: &str, type_: &str, field: &str) -> (Vec<String>, String) {
    (
        vec!["get".into(), kind.into(), name.into()],
        format!("{{.status.conditions[?(@.type==\"{type_}\")].{field}}}"),
    )
}

fn wait_condition(server: &Server, kind: &str, name: &str, type_: &str, field: &str, want: &str) {
    let (args, path) = condition(kind, name, type_, field);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    wait_for(server, &args, &path, want);
}

fn indexed_job(name: &str, extra_spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  \
         completionMode: Indexed\n{extra_spec}  template:\n    spec:\n      \
         restartPolicy: Never\n      containers:\n      - name: main\n        \
         image: busybox:1.36\n        command: [\"{command}\"]\n"
    )
}

#[test]
fn backoff_limit_per_index_retries_each_index_then_fails_the_job() {
    let (server, _agent) = cluster("bpi", 2);
    server.ok_stdin(
        &["apply", "-f", "-"],
        &indexed_job(
            "perindex",
            "  completions: 2\n  parallelism: 2\n  backoffLimitPerIndex: 1\n",
            "false",
        ),
    );
    // Each index runs twice (one retry after its own 10 s backoff), then
    // both are failed and so is the Job.
    wait_condition(
        &server,
        "job",
        "perindex",
        "Failed",
        "reason",
        "FailedIndexes",
    );
    assert_eq!(
        server.jsonpath(&["get", "job", "perindex"], "{.status.failedIndexes}"),
        "0,1"
    );
    assert_eq!(
        server.jsonpath(&["get", "job", "perindex"], "{.status.failed}"),
        "4"
    );
    assert_eq!(
        server.jsonpath(
            &["get", "job", "perindex"],
            "{.status.conditions[?(@.type==\"Failed\")].message}"
        ),
        "Job has failed indexes"
    );
    // The retries carry their index's failure count.
    let counts = server.jsonpath(
        &["get", "pods", "-l", "batch.kubernetes.io/job-completion-index=1"],
        "{range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/job-index-failure-count} {end}",
    );
    let mut counts: Vec<&str> = counts.split_whitespace().collect();
    counts.sort();
    assert_eq!(counts, ["0", "1"]);
}

#[test]
fn max_failed_indexes_and_success_policy_end_jobs_early() {
    let (server, _agent) = cluster("mfi", 2);
    server.ok_stdin(
        &["apply", "-f", "-"],
        &indexed_job(
            "maxfailed",
            "  completions: 4\n  parallelism: 2\n  backoffLimitPerIndex: 0\n  \
             maxFailedIndexes: 0\n",
            "false",
        ),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &indexed_job(
            "policy",
            "  completions: 3\n  parallelism: 1\n  successPolicy:\n    rules:\n    \
             - succeededCount: 1\n",
            "true",
        ),
    );
    wait_condition(
        &server,
        "job",
        "maxfailed",
        "Failed",
        "reason",
        "MaxFailedIndexesExceeded",
    );
    assert_eq!(
        server.jsonpath(
            &["get", "job", "maxfailed"],
            "{.status.conditions[?(@.type==\"Failed\")].message}"
        ),
        "Job has exceeded the specified maximal number of failed indexes"
    );
    // One succeeded index meets the policy: the Job completes without
    // running the other two.
    wait_condition(
        &server,
        "job",
        "policy",
        "Complete",
        "reason",
        "SuccessPolicy",
    );
    let (args, path) = condition("job", "policy", "SuccessCriteriaMet", "message");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(server.jsonpath(&args, &path), "Matched rules at index 0");
    assert_eq!(
        server.jsonpath(&["get", "job", "policy"], "{.status.completedIndexes}"),
        "0"
    );
    let pods = server.ok(&["get", "pods", "-l", "job-name=policy", "-o", "name"]);
    assert_eq!(pods.lines().count(), 1, "{pods}");
}

const STATEFULSET: &str = "
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 4
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: IMAGE
";

#[test]
fn statefulset_rolls_out_with_max_unavailable() {
    let (server, _agent) = cluster("ssu", 2);
    server.ok_stdin(
        &["apply", "-f", "-"],
        &STATEFULSET.replace("IMAGE", "busybox:1.36"),
    );
    wait_for(
        &server,
        &["get", "statefulset", "web"],
        "{.status.readyReplicas}",
        "4",
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &STATEFULSET.replace("IMAGE", "busybox:1.37"),
    );
    // Watch the rollout: at some point two replicas are down at once,
    // never more.
    let mut most_down = 0;
    let ok = eventually(WAIT, || {
        let ready = server.jsonpath(&["get", "statefulset", "web"], "{.status.readyReplicas}");
        let ready: i32 = ready.trim().parse().unwrap_or(0);
        most_down = most_down.max(4 - ready);
        let images = server.jsonpath(
            &["get", "pods", "-l", "app=web"],
            "{range .items[*]}{.spec.containers[0].image} {end}",
        );
        ready == 4
            && images
                .split_whitespace()
                .filter(|i| *i == "busybox:1.37")
                .count()
                == 4
    });
    assert!(
        ok,
        "rollout did not finish:\n{}",
        server.ok(&["get", "pods", "-o", "wide"])
    );
    assert!(most_down <= 2, "{most_down} replicas were down at once");
    let status = server.jsonpath(
        &["get", "statefulset", "web"],
        "{.status.currentRevision}={.status.updateRevision} {.status.availableReplicas}",
    );
    let (revs, available) = status.split_once(' ').unwrap();
    let (cur, upd) = revs.split_once('=').unwrap();
    assert_eq!(cur, upd, "rollout complete");
    assert_eq!(available, "4");
}

fn sim_pod(name: &str, node: &str, tolerate_secs: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  \
         terminationGracePeriodSeconds: 1\n  tolerations:\n  - key: node.kubernetes.io/unreachable\n    \
         operator: Exists\n    effect: NoExecute\n    tolerationSeconds: {tolerate_secs}\n  \
         containers:\n  - name: main\n    image: busybox:1.36\n"
    )
}

fn taints(server: &Server, node: &str) -> String {
    server.jsonpath(
        &["get", "node", node],
        "{range .spec.taints[*]}{.key}:{.effect} {end}",
    )
}

#[test]
fn every_node_down_stops_evictions_until_one_is_back() {
    let (server, agent) = cluster("dis", 2);
    // The nodes' Leases lapse up to 10 s apart: while one is still up the
    // other may get its NoExecute taint for a moment (as upstream), which
    // 20 s of toleration outlasts.
    server.ok_stdin(&["apply", "-f", "-"], &sim_pod("quick", "dis-0", 20));
    wait_condition(&server, "pod", "quick", "Ready", "status", "True");
    agent.kill();
    for node in ["dis-0", "dis-1"] {
        wait_condition(&server, "node", node, "Ready", "status", "Unknown");
        wait_for(
            &server,
            &["get", "node", node],
            "{range .spec.taints[*]}{.key}:{.effect} {end}",
            "node.kubernetes.io/unreachable:NoSchedule ",
        );
    }
    // With every node down the controller blames its own connectivity:
    // no NoExecute taint comes, so nothing is evicted. Watch a while.
    let tainted = eventually(Duration::from_secs(8), || {
        taints(&server, "dis-0").contains("NoExecute")
    });
    assert!(!tainted, "a NoExecute taint came in full disruption");
    assert_eq!(
        server.jsonpath(&["get", "pod", "quick"], "{.metadata.deletionTimestamp}"),
        ""
    );
    // One ready node ends the disruption mode: the down nodes get their
    // NoExecute taints (one per 10 s in the zone) and quick is evicted
    // once its toleration runs out.
    let up = Agent::simulate(&server, 1, "back", &[]);
    wait_condition(&server, "node", "back-0", "Ready", "status", "True");
    wait_for(
        &server,
        &["get", "pod", "quick"],
        "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
        "DeletionByTaintManager",
    );
    let ok = eventually(WAIT, || {
        taints(&server, "dis-0").contains("unreachable:NoExecute")
            && taints(&server, "dis-1").contains("unreachable:NoExecute")
    });
    assert!(
        ok,
        "taints: {} / {}",
        taints(&server, "dis-0"),
        taints(&server, "dis-1")
    );
    drop(up);
}

/// A Node applied by kubectl (no kubelet): name, cpu.
fn node(name: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: \
         {{kubernetes.io/hostname: \"{name}\"}}\nstatus:\n  capacity: {{cpu: \"{cpu}\", memory: 8Gi, \
         pods: \"110\"}}\n  allocatable: {{cpu: \"{cpu}\", memory: 8Gi, pods: \"110\"}}\n  \
         conditions: [{{type: Ready, status: \"True\"}}]\n---\n"
    )
}

fn pod(name: &str, ns: &str, labels: &str, cpu: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: \
         {{{labels}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: \
         {{requests: {{cpu: \"{cpu}\"}}}}\n{extra}---\n"
    )
}

fn node_of(s: &Server, ns: &str, pod: &str) -> String {
    s.ok(&[
        "get",
        "pod",
        "-n",
        ns,
        pod,
        "-o",
        "jsonpath={.spec.nodeName}",
    ])
    .trim()
    .to_string()
}

#[test]
fn preemption_spares_pods_a_disruption_budget_protects() {
    // No controller manager: nothing runs the pods, the budget's status
    // stays at zero disruptions allowed.
    let s = start(&["--disable-controller-manager"]);
    s.ok_stdin(&["apply", "-f", "-"], &(node("n1", "1") + &node("n2", "1")));
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n---\n\
         apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: db}\nspec:\n  \
         minAvailable: 1\n  selector: {matchLabels: {app: db}}\n",
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &(pod("db", "default", "app: db", "800m", "  nodeName: n1\n")
            + &pod("web", "default", "app: web", "800m", "  nodeName: n2\n")),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "vip",
            "default",
            "app: vip",
            "500m",
            "  priorityClassName: high\n",
        ),
    );
    wait_for(
        &s,
        &["get", "pod", "vip"],
        "{.status.nominatedNodeName}",
        "n2",
    );
    // The victim is marked before it goes, as upstream.
    wait_for(
        &s,
        &["get", "pod", "web"],
        "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
        "PreemptionByScheduler",
    );
    assert!(!s
        .jsonpath(&["get", "pod", "web"], "{.metadata.deletionTimestamp}")
        .is_empty());
    assert_eq!(
        s.jsonpath(&["get", "pod", "db"], "{.metadata.deletionTimestamp}"),
        "",
        "the budget-protected pod stays"
    );
}

#[test]
fn affinity_namespace_selectors_match_namespace_labels() {
    let s = start(&["--disable-controller-manager"]);
    s.ok_stdin(&["apply", "-f", "-"], &(node("n1", "4") + &node("n2", "4")));
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {team: a}\n",
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "anchor",
            "team-a",
            "app: anchor",
            "100m",
            "  nodeName: n2\n",
        ),
    );
    let follower = |name: &str, team: &str| {
        pod(
            name,
            "default",
            "app: follower",
            "100m",
            &format!(
                "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      \
                 - labelSelector: {{matchLabels: {{app: anchor}}}}\n        \
                 namespaceSelector: {{matchLabels: {{team: {team}}}}}\n        \
                 topologyKey: kubernetes.io/hostname\n"
            ),
        )
    };
    s.ok_stdin(&["apply", "-f", "-"], &follower("with-a", "a"));
    s.ok_stdin(&["apply", "-f", "-"], &follower("with-b", "b"));
    let ok = eventually(WAIT, || node_of(&s, "default", "with-a") == "n2");
    assert!(ok, "{}", s.ok(&["describe", "pod", "with-a"]));
    wait_for(
        &s,
        &["get", "pod", "with-b"],
        "{.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        "Unschedulable",
    );
    assert_eq!(node_of(&s, "default", "with-b"), "");
    // Labelling a namespace team=b makes it count for later checks.
    s.ok(&["label", "namespace", "team-a", "team=b", "--overwrite"]);
    s.ok(&["delete", "pod", "with-b", "--wait=false"]);
    s.ok_stdin(&["apply", "-f", "-"], &follower("with-b2", "b"));
    let ok = eventually(WAIT, || node_of(&s, "default", "with-b2") == "n2");
    assert!(ok, "{}", s.ok(&["describe", "pod", "with-b2"]));
}

#[test]
fn image_locality_prefers_the_node_holding_the_image() {
    let s = start(&["--disable-controller-manager"]);
    // 800 MiB on one node of two: half of it counts, about 38 of 100.
    let holder = node("holder", "4").replace(
        "status:\n",
        "status:\n  images:\n  - names: [\"registry.local/big:1\"]\n    sizeBytes: 838860800\n",
    );
    s.ok_stdin(&["apply", "-f", "-"], &(node("plain", "4") + &holder));
    assert_eq!(
        s.jsonpath(&["get", "node", "holder"], "{.status.images[0].sizeBytes}"),
        "838860800"
    );
    let p = pod("big", "default", "app: big", "100m", "")
        .replace("image: busybox", "image: registry.local/big:1");
    s.ok_stdin(&["apply", "-f", "-"], &p);
    let ok = eventually(WAIT, || node_of(&s, "default", "big") == "holder");
    assert!(ok, "{}", s.ok(&["describe", "pod", "big"]));
}
