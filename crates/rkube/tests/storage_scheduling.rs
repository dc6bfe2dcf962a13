//! Storage in the scheduler and the controllers, driven by the real
//! kubectl on simulated nodes (`rkube agent --simulate 3`: nodes sv-0,
//! sv-1, sv-2 labelled with their hostnames): a bound local volume pins
//! its pod's node, an unbound Immediate claim keeps its pod Pending with
//! upstream's FailedScheduling wording until a volume appears, a
//! WaitForFirstConsumer claim sends its pod to the node of a matching
//! local volume (and names that node on the claim), and pvc-protection /
//! pv-protection keep objects in use Terminating until their users go.

mod support;

use std::time::Duration;

use support::agent::{simulated_cluster, Agent};
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(90);

/// A PersistentVolume of `size` in `class`, reachable from `node` only
/// when given (a local volume), else a hostPath anywhere.
fn volume(name: &str, class: &str, size: &str, node: Option<&str>) -> String {
    let (source, affinity) = match node {
        Some(n) => (
            format!("local: {{path: /tmp/{name}}}"),
            format!(
                "nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: \
                 [{{key: kubernetes.io/hostname, operator: In, values: [{n}]}}]}}]}}}}"
            ),
        ),
        None => (format!("hostPath: {{path: /tmp/{name}}}"), String::new()),
    };
    format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: {size}}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: "{class}"
  {source}
  {affinity}
"#
    )
}

fn claim(name: &str, class: &str, size: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: "{class}"
  resources: {{requests: {{storage: {size}}}}}
"#
    )
}

fn pod(name: &str, claim: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - {{name: c, image: busybox, command: [sleep, "3600"]}}
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

fn context<'a>(server: &'a Server, agent: &'a Agent) -> impl FnOnce() -> String + 'a {
    move || {
        let dump = server
            .kubectl(&[
                "get",
                "pods,pvc,pv,events",
                "-o",
                "wide",
                "--all-namespaces",
            ])
            .stdout;
        let agent_log = agent.log();
        format!(
            "{}\nserver log:\n{}\nagent log (tail):\n{}",
            String::from_utf8_lossy(&dump),
            server.log_tail(60),
            agent_log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

fn node_of(server: &Server, pod: &str) -> String {
    server.jsonpath(&["get", "pod", pod], "{.spec.nodeName}")
}

#[test]
fn volumes_steer_scheduling() {
    let (server, agent) = simulated_cluster("sv", 3, WAIT);

    // A claim bound to a local volume on sv-1: its pod goes to sv-1.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &volume("local-1", "", "1Gi", Some("sv-1")),
    );
    server.ok_stdin(&["apply", "-f", "-"], &claim("pinned", "", "1Gi"));
    server.wait_jsonpath(
        WAIT,
        &["get", "pvc", "pinned"],
        "{.status.phase}",
        "Bound",
        context(&server, &agent),
    );
    server.ok_stdin(&["apply", "-f", "-"], &pod("pinned", "pinned"));
    server.wait_jsonpath(
        WAIT,
        &["get", "pod", "pinned"],
        "{.spec.nodeName}",
        "sv-1",
        context(&server, &agent),
    );

    // An unbound Immediate claim: Pending with upstream's message, then
    // scheduled once a volume appears and the binder binds it.
    server.ok_stdin(&["apply", "-f", "-"], &claim("later", "", "5Gi"));
    server.ok_stdin(&["apply", "-f", "-"], &pod("waiting", "later"));
    let want = "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.";
    let mut last = String::new();
    let told = eventually(WAIT, || {
        last = server.jsonpath(
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=waiting",
            ],
            "{range .items[*]}{.reason}|{.message}{\"\\n\"}{end}",
        );
        last.lines()
            .any(|l| l.starts_with("FailedScheduling|") && l.contains(want))
    });
    assert!(
        told,
        "no FailedScheduling {want:?}: {last}\n{}",
        server.log_tail(40)
    );
    let cond = server.jsonpath(
        &["get", "pod", "waiting"],
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
    );
    assert!(cond.starts_with(want), "PodScheduled message: {cond}");
    assert_eq!(
        node_of(&server, "waiting"),
        "",
        "scheduled without its claim"
    );
    server.ok_stdin(&["apply", "-f", "-"], &volume("big", "", "5Gi", None));
    server.wait_jsonpath(
        WAIT,
        &["get", "pod", "waiting"],
        "{.status.conditions[?(@.type==\"PodScheduled\")].status}",
        "True",
        context(&server, &agent),
    );
    assert_eq!(
        server.jsonpath(&["get", "pvc", "later"], "{.spec.volumeName}"),
        "big"
    );

    // WaitForFirstConsumer: the only matching local volume is on sv-2 (a
    // larger one of another class sits on sv-0); the pod goes to sv-2, the
    // claim names that node and binds to its volume.
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local-wait}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"#,
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &volume("wait-0", "other", "9Gi", Some("sv-0")),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &volume("wait-2", "local-wait", "2Gi", Some("sv-2")),
    );
    server.ok_stdin(&["apply", "-f", "-"], &claim("first", "local-wait", "1Gi"));
    server.ok_stdin(&["apply", "-f", "-"], &pod("consumer", "first"));
    server.wait_jsonpath(
        WAIT,
        &["get", "pod", "consumer"],
        "{.spec.nodeName}",
        "sv-2",
        context(&server, &agent),
    );
    server.wait_jsonpath(
        WAIT,
        &["get", "pvc", "first"],
        "{.spec.volumeName}",
        "wait-2",
        context(&server, &agent),
    );
    assert_eq!(
        server.jsonpath(
            &["get", "pvc", "first"],
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        "sv-2"
    );

    // A WaitForFirstConsumer claim no volume can serve: every node says so.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &claim("nowhere", "local-wait", "50Gi"),
    );
    server.ok_stdin(&["apply", "-f", "-"], &pod("stuck", "nowhere"));
    let want =
        "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind.";
    let ok = eventually(WAIT, || {
        last = server.jsonpath(
            &["get", "pod", "stuck"],
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        );
        last.starts_with(want)
    });
    assert!(ok, "want {want:?}, last {last:?}");
}

#[test]
fn objects_in_use_stay_terminating() {
    let (server, agent) = simulated_cluster("sp", 1, WAIT);
    server.ok_stdin(&["apply", "-f", "-"], &volume("held-pv", "", "1Gi", None));
    server.ok_stdin(&["apply", "-f", "-"], &claim("held", "", "1Gi"));
    assert_eq!(
        server.jsonpath(&["get", "pvc", "held"], "{.metadata.finalizers}"),
        r#"["kubernetes.io/pvc-protection"]"#
    );
    assert_eq!(
        server.jsonpath(&["get", "pv", "held-pv"], "{.metadata.finalizers}"),
        r#"["kubernetes.io/pv-protection"]"#
    );
    server.wait_jsonpath(
        WAIT,
        &["get", "pvc", "held"],
        "{.status.phase}",
        "Bound",
        context(&server, &agent),
    );
    server.ok_stdin(&["apply", "-f", "-"], &pod("user", "held"));
    server.wait_jsonpath(
        WAIT,
        &["get", "pod", "user"],
        "{.status.phase}",
        "Running",
        context(&server, &agent),
    );

    // Deleting the claim and its volume while the pod runs: both stay,
    // marked for deletion.
    server.ok(&["delete", "pvc", "held", "--wait=false"]);
    server.ok(&["delete", "pv", "held-pv", "--wait=false"]);
    // Give the protection controllers time to (wrongly) let go: the objects
    // must still be there after several of their sync rounds.
    let gone = eventually(Duration::from_secs(5), || {
        server.jsonpath(&["get", "pvc", "held"], "{.metadata.name}") != "held"
            || server.jsonpath(&["get", "pv", "held-pv"], "{.metadata.name}") != "held-pv"
    });
    assert!(
        !gone,
        "an object in use went:\n{}",
        context(&server, &agent)()
    );
    assert_ne!(
        server.jsonpath(&["get", "pvc", "held"], "{.metadata.deletionTimestamp}"),
        ""
    );
    let table = server.ok(&["get", "pvc", "held"]);
    assert!(table.contains("Terminating"), "kubectl get pvc:\n{table}");

    // The pod goes: the claim goes, the volume is released and goes too.
    server.ok(&["delete", "pod", "user", "--timeout=120s"]);
    let freed = eventually(WAIT, || {
        !server.kubectl(&["get", "pvc", "held"]).status.success()
            && !server.kubectl(&["get", "pv", "held-pv"]).status.success()
    });
    assert!(
        freed,
        "claim or volume left:\n{}",
        context(&server, &agent)()
    );

    // A claim nobody uses is deleted at once.
    server.ok_stdin(&["apply", "-f", "-"], &claim("idle", "", "1Gi"));
    server.ok(&["delete", "pvc", "idle", "--timeout=60s"]);
    assert!(!server.kubectl(&["get", "pvc", "idle"]).status.success());
}
