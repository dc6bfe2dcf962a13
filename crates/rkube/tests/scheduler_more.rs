//! The scheduler's reaction to cluster changes other than pods and nodes —
//! with the real binary and real kubectl, on nodes applied by kubectl (no
//! kubelet, so no heartbeat wakes a waiting pod by chance).
//!
//! Upstream counterpart: the Namespace events InterPodAffinity registers
//! for (`EventsToRegister`), which move pods waiting on an affinity term's
//! namespaceSelector back into the active queue.

mod support;

use std::time::Duration;

use support::{eventually, Server};

/// Well under the five minutes after which the queue retries a parked pod
/// anyway: a pod placed within it was woken by the event.
const WAIT: Duration = Duration::from_secs(90);

fn node(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: \
         {{kubernetes.io/hostname: \"{name}\"}}\nstatus:\n  capacity: {{cpu: \"4\", memory: 8Gi, \
         pods: \"110\"}}\n  allocatable: {{cpu: \"4\", memory: 8Gi, pods: \"110\"}}\n  \
         conditions: [{{type: Ready, status: \"True\"}}]\n---\n"
    )
}

fn jsonpath(s: &Server, args: &[&str], path: &str) -> String {
    let out = s.kubectl(&[args, &["-o", &format!("jsonpath={path}")]].concat());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn relabelling_a_namespace_schedules_a_pod_waiting_on_its_selector() {
    let s = Server::start_with(&["--disable-controller-manager"]);
    s.ok_stdin(&["apply", "-f", "-"], &(node("n1") + &node("n2")));
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: backend\n  labels: {team: a}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: db\n  namespace: backend\n  labels: {app: db}\n\
         spec:\n  nodeName: n2\n  containers:\n  - {name: c, image: busybox}\n",
    );
    // Needs a pod labelled app=db in a namespace labelled team=b: none yet.
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  \
         affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      \
         - labelSelector: {matchLabels: {app: db}}\n        \
         namespaceSelector: {matchLabels: {team: b}}\n        \
         topologyKey: kubernetes.io/hostname\n  containers:\n  - {name: c, image: busybox}\n",
    );
    let reason = "{.status.conditions[?(@.type==\"PodScheduled\")].reason}";
    assert!(
        eventually(WAIT, || jsonpath(&s, &["get", "pod", "web"], reason)
            == "Unschedulable"),
        "{}",
        s.ok(&["describe", "pod", "web"])
    );
    assert_eq!(jsonpath(&s, &["get", "pod", "web"], "{.spec.nodeName}"), "");
    // The same pod, not a new one, is placed once the namespace matches.
    s.ok(&["label", "namespace", "backend", "team=b", "--overwrite"]);
    let placed = eventually(WAIT, || {
        jsonpath(&s, &["get", "pod", "web"], "{.spec.nodeName}") == "n2"
    });
    assert!(placed, "{}", s.ok(&["describe", "pod", "web"]));
}
