//! The scheduler inside `rkube server`, driven by the real kubectl: pods
//! land where their constraints allow, and pods that fit nowhere stay
//! Pending with upstream's FailedScheduling wording. Nodes are registered
//! with `kubectl apply` (status included, as a kubelet registers); the
//! controller manager is off so no node lifecycle taints them meanwhile.

mod support;

use std::time::Duration;

use support::{eventually, Server};

fn server() -> Server {
    Server::start_with(&["--disable-controller-manager"])
}

/// A Node manifest: name, cpu, extra labels, taints as (key, value, effect).
fn node(name: &str, cpu: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> String {
    let mut l = format!("kubernetes.io/hostname: \"{name}\"");
    for (k, v) in labels {
        l.push_str(&format!(", {k}: \"{v}\""));
    }
    let t: Vec<String> = taints
        .iter()
        .map(|(k, v, e)| format!("{{key: {k}, value: \"{v}\", effect: {e}}}"))
        .collect();
    format!(
        r#"
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{{l}}}
spec:
  taints: [{taints}]
status:
  capacity: {{cpu: "{cpu}", memory: 8Gi, pods: "110"}}
  allocatable: {{cpu: "{cpu}", memory: 8Gi, pods: "110"}}
  conditions: [{{type: Ready, status: "True"}}]
---
"#,
        taints = t.join(", ")
    )
}

/// A pod manifest with `extra` spec lines (indented by two spaces).
fn pod(name: &str, labels: &str, cpu: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  containers:
  - name: c
    image: busybox
    resources: {{requests: {{cpu: "{cpu}"}}}}
{extra}
---
"#
    )
}

fn node_of(s: &Server, pod: &str) -> String {
    s.ok(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"])
        .trim()
        .to_string()
}

/// Wait until `pod` is bound; returns its node.
fn bound(s: &Server, pod: &str) -> String {
    let mut node = String::new();
    let ok = eventually(Duration::from_secs(30), || {
        node = node_of(s, pod);
        !node.is_empty()
    });
    assert!(
        ok,
        "pod {pod} was not scheduled:\n{}",
        s.ok(&["describe", "pod", pod])
    );
    node
}

/// Wait for the PodScheduled=False condition and return its message.
fn unschedulable_message(s: &Server, pod: &str) -> String {
    let path = "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}|\
                {.status.conditions[?(@.type==\"PodScheduled\")].reason}|\
                {.status.conditions[?(@.type==\"PodScheduled\")].message}";
    let mut out = String::new();
    let ok = eventually(Duration::from_secs(30), || {
        out = s.ok(&["get", "pod", pod, "-o", path]);
        out.starts_with("False|Unschedulable|")
    });
    assert!(ok, "no PodScheduled=False on {pod}: {out:?}");
    assert_eq!(node_of(s, pod), "", "{pod} must stay unbound");
    out.splitn(3, '|').nth(2).unwrap().to_string()
}

const PREEMPTION_NOT_HELPFUL: &str =
    "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";

#[test]
fn node_selector_and_failed_scheduling_event() {
    let s = server();
    let nodes = node("ssd", "4", &[("disk", "ssd")], &[])
        + &node("hdd", "4", &[("disk", "hdd")], &[])
        + &node(
            "gone",
            "4",
            &[("disk", "ssd")],
            &[("node.kubernetes.io/unreachable", "", "NoSchedule")],
        );
    s.ok_stdin(&["apply", "-f", "-"], &nodes);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod("fast", "app: db", "100m", "  nodeSelector: {disk: ssd}"),
    );
    assert_eq!(bound(&s, "fast"), "ssd");
    let scheduled = s.ok(&[
        "get",
        "pod",
        "fast",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}",
    ]);
    assert_eq!(scheduled.trim(), "True");

    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod("nowhere", "app: db", "100m", "  nodeSelector: {disk: nvme}"),
    );
    let msg = unschedulable_message(&s, "nowhere");
    assert_eq!(
        msg,
        // Entries sort as strings, as upstream's.
        format!(
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {{node.kubernetes.io/unreachable: }}, 2 node(s) didn't match Pod's node \
             affinity/selector. {PREEMPTION_NOT_HELPFUL}"
        )
    );
    // The same words in the event, as kubectl shows it.
    let mut events = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            events = s.ok(&["get", "events", "--field-selector", "involvedObject.name=nowhere", "-o",
            "jsonpath={range .items[*]}{.type}|{.reason}|{.source.component}|{.message}{\"\\n\"}{end}"]);
            events.contains("FailedScheduling")
        }),
        "no FailedScheduling event: {events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l == format!("Warning|FailedScheduling|default-scheduler|{msg}")),
        "{events}"
    );
    let describe = s.ok(&["describe", "pod", "nowhere"]);
    assert!(
        describe.contains("FailedScheduling") && describe.contains("default-scheduler"),
        "{describe}"
    );
    assert!(describe.contains("0/3 nodes are available"), "{describe}");
    let fast_events = s.ok(&["describe", "pod", "fast"]);
    assert!(
        fast_events.contains("Successfully assigned default/fast to ssd"),
        "{fast_events}"
    );

    // A node that gains the label takes the waiting pod.
    s.ok(&["label", "node", "hdd", "disk=nvme", "--overwrite"]);
    assert_eq!(bound(&s, "nowhere"), "hdd");
}

#[test]
fn taints_tolerations_and_cordon() {
    let s = server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &node("gpu", "4", &[], &[("dedicated", "gpu", "NoSchedule")]),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod("plain", "app: plain", "100m", ""),
    );
    let msg = unschedulable_message(&s, "plain");
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "tolerant",
            "app: plain",
            "100m",
            "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]",
        ),
    );
    assert_eq!(bound(&s, "tolerant"), "gpu");

    // A cordoned node takes nothing new; uncordoning lets the pod in.
    s.ok_stdin(&["apply", "-f", "-"], &node("spare", "4", &[], &[]));
    s.ok(&["cordon", "spare"]);
    s.ok_stdin(&["apply", "-f", "-"], &pod("late", "app: late", "100m", ""));
    let msg = unschedulable_message(&s, "late");
    assert!(msg.starts_with("0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable."), "{msg}");
    s.ok(&["uncordon", "spare"]);
    assert_eq!(bound(&s, "late"), "spare");
}

#[test]
fn resources_fit_and_least_allocated() {
    let s = server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &(node("small", "2", &[], &[]) + &node("large", "8", &[], &[])),
    );
    s.ok_stdin(&["apply", "-f", "-"], &pod("big", "app: a", "3", ""));
    assert_eq!(bound(&s, "big"), "large");
    // Emptier node wins for a small pod: small has 2 free of 2, large 5 of 8.
    s.ok_stdin(&["apply", "-f", "-"], &pod("tiny", "app: a", "500m", ""));
    assert_eq!(bound(&s, "tiny"), "small");
    s.ok_stdin(&["apply", "-f", "-"], &pod("huge", "app: a", "6", ""));
    let msg = unschedulable_message(&s, "huge");
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 Insufficient cpu. \
         preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    // Freeing room (deleting big; no kubelet, so force) lets it in.
    s.ok(&["delete", "pod", "big", "--grace-period=0", "--force"]);
    assert_eq!(bound(&s, "huge"), "large");
}

#[test]
fn anti_affinity_spreads_replicas() {
    let s = server();
    let nodes = node("n1", "4", &[], &[]) + &node("n2", "4", &[], &[]) + &node("n3", "4", &[], &[]);
    s.ok_stdin(&["apply", "-f", "-"], &nodes);
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {matchLabels: {app: web}}\n        topologyKey: kubernetes.io/hostname";
    let mut all = String::new();
    for i in 0..4 {
        all.push_str(&pod(&format!("web-{i}"), "app: web", "100m", anti));
    }
    s.ok_stdin(&["apply", "-f", "-"], &all);
    let mut seen = std::collections::HashSet::new();
    let mut pending = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            seen.clear();
            pending.clear();
            for i in 0..4 {
                let n = node_of(&s, &format!("web-{i}"));
                if n.is_empty() {
                    pending.push(i);
                } else {
                    seen.insert(n);
                }
            }
            seen.len() == 3
        }),
        "three replicas on three nodes: {seen:?}"
    );
    assert_eq!(pending.len(), 1);
    let msg = unschedulable_message(&s, &format!("web-{}", pending[0]));
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
}

#[test]
fn preemption_of_a_lower_priority_pod() {
    let s = server();
    s.ok_stdin(&["apply", "-f", "-"], &node("only", "1", &[], &[]));
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
    );
    s.ok_stdin(&["apply", "-f", "-"], &pod("low", "app: batch", "800m", ""));
    assert_eq!(bound(&s, "low"), "only");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod("vip", "app: vip", "500m", "  priorityClassName: high"),
    );
    // The victim is deleted (graceful: without a kubelet it stays
    // Terminating) and the preemptor is nominated to its node.
    let mut out = String::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            out = s.ok(&[
                "get",
                "pod",
                "vip",
                "-o",
                "jsonpath={.status.nominatedNodeName}",
            ]);
            out.trim() == "only"
        }),
        "vip not nominated: {out:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            let o = s.kubectl(&[
                "get",
                "pod",
                "low",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ]);
            !o.status.success() || !String::from_utf8_lossy(&o.stdout).trim().is_empty()
        }),
        "low was not preempted"
    );
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=low",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("Preempted"), "{events}");
    // Once the victim is gone the preemptor lands.
    let _ = s.kubectl(&["delete", "pod", "low", "--grace-period=0", "--force"]);
    assert_eq!(bound(&s, "vip"), "only");
}

#[test]
fn other_schedulers_pods_are_left_alone() {
    let s = server();
    s.ok_stdin(&["apply", "-f", "-"], &node("solo", "4", &[], &[]));
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod("mine", "app: a", "100m", "  schedulerName: my-scheduler"),
    );
    s.ok_stdin(&["apply", "-f", "-"], &pod("ours", "app: a", "100m", ""));
    assert_eq!(bound(&s, "ours"), "solo");
    assert_eq!(node_of(&s, "mine"), "");
    // The lease of the leader-elected scheduler, named as upstream.
    let holder = s.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-scheduler",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(!holder.trim().is_empty());
}

#[test]
fn deployment_replicas_spread_over_simulated_nodes() {
    // The controller manager runs here: the simulated nodes renew their
    // Leases, so the node lifecycle controller leaves them untainted.
    let s = Server::start();
    let _agent = support::agent::Agent::simulate(&s, 3, "spread", &[]);
    assert!(eventually(Duration::from_secs(30), || s
        .kubectl(&["get", "node", "spread-2"])
        .status
        .success()));
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 6
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      nodeSelector: {rkube.io/simulated: "true"}
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"#,
    );
    // No spreading rule in the pod: the default constraints (per owner,
    // by hostname) put two on each node.
    let mut placed = String::new();
    let ok = eventually(Duration::from_secs(60), || {
        placed = s.ok(&[
            "get",
            "pods",
            "-l",
            "app=spread",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ]);
        placed.lines().count() == 6
    });
    assert!(ok, "six Running replicas: {placed:?}");
    let mut per_node = std::collections::BTreeMap::<&str, usize>::new();
    for n in placed.lines() {
        *per_node.entry(n).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|c| *c == 2), "{per_node:?}");
}
