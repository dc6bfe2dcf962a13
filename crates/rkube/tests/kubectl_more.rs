//! More of the kubectl acceptance list: foreground cascading deletion,
//! grace periods, `kubectl wait` for conditions and deletion, watch
//! events. Each step checks what kubectl prints.

mod support;

use std::time::Duration;

use support::{eventually, Server};

fn pod_on_node(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
  "spec": {{"nodeName": "nowhere", "terminationGracePeriodSeconds": 45,
           "containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
    )
}

#[test]
fn foreground_deletion_removes_dependents_first() {
    let server = Server::start();
    server.ok(&["create", "configmap", "owner", "--from-literal=a=b"]);
    let uid = server.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    server.ok_stdin(
        &["create", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}, blockOwnerDeletion: true}}\n"
        ),
    );
    // Without waiting, the owner is seen held by the foreground finalizer
    // (or already gone, if the garbage collector was quick).
    let out = server.ok(&[
        "delete",
        "cm",
        "owner",
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert_eq!(out, "configmap \"owner\" deleted\n");
    let held = server.kubectl(&[
        "get",
        "cm",
        "owner",
        "-o",
        "jsonpath={.metadata.finalizers} {.metadata.deletionTimestamp}",
    ]);
    if held.status.success() {
        let shown = String::from_utf8_lossy(&held.stdout);
        assert!(shown.starts_with(r#"["foregroundDeletion"] "#), "{shown}");
    }
    // Both go: the child first, then the owner.
    assert!(
        eventually(Duration::from_secs(20), || {
            !server.kubectl(&["get", "cm", "owner"]).status.success()
        }),
        "owner still there"
    );
    let err = server.fails(&["get", "cm", "child"]);
    assert!(err.contains(r#"configmaps "child" not found"#), "{err}");
}

#[test]
fn grace_periods_and_forced_deletion() {
    let server = Server::start_with(&["--disable-scheduler"]);
    server.ok_stdin(&["create", "-f", "-"], &pod_on_node("slow"));
    // A pod on a node waits for its kubelet: marked, not gone.
    let out = server.ok(&["delete", "pod", "slow", "--grace-period=7", "--wait=false"]);
    assert_eq!(out, "pod \"slow\" deleted\n");
    let marked = server.ok(&[
        "get",
        "pod",
        "slow",
        "-o",
        "jsonpath={.metadata.deletionGracePeriodSeconds}",
    ]);
    assert_eq!(marked, "7");
    // A shorter period cuts it; --force with 0 removes it at once.
    let out = server.kubectl(&["delete", "pod", "slow", "--grace-period=0", "--force"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod \"slow\" force deleted\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Immediate deletion does not wait for confirmation"));
    let err = server.fails(&["get", "pod", "slow"]);
    assert!(err.contains(r#"pods "slow" not found"#), "{err}");

    // Without a request, the pod's own terminationGracePeriodSeconds.
    server.ok_stdin(&["create", "-f", "-"], &pod_on_node("default-grace"));
    server.ok(&["delete", "pod", "default-grace", "--wait=false"]);
    let marked = server.ok(&[
        "get",
        "pod",
        "default-grace",
        "-o",
        "jsonpath={.metadata.deletionGracePeriodSeconds}",
    ]);
    assert_eq!(marked, "45");
}

#[test]
fn wait_for_condition_and_for_delete() {
    let server = Server::start_with(&["--disable-scheduler"]);
    server.ok_stdin(&["create", "-f", "-"], &pod_on_node("p"));
    let ready =
        r#"{"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}"#;
    // The condition turns true while kubectl waits.
    let waiter =
        server.kubectl_background(&["wait", "--for=condition=Ready", "pod/p", "--timeout=20s"]);
    std::thread::sleep(Duration::from_millis(500));
    server.ok(&[
        "patch",
        "pod",
        "p",
        "--subresource=status",
        "--type=merge",
        "-p",
        ready,
    ]);
    let out = waiter.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod/p condition met\n"
    );

    let out = server.ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Running",
        "pod/p",
        "--timeout=10s",
    ]);
    assert_eq!(out, "pod/p condition met\n");
    // A condition that never comes: kubectl gives up with its timeout.
    let err = server.fails(&[
        "wait",
        "--for=condition=Initialized",
        "pod/p",
        "--timeout=1s",
    ]);
    assert!(
        err.contains("timed out waiting for the condition on pods/p"),
        "{err}"
    );

    // Waiting for deletion ends when the kubelet's part is done.
    server.ok(&["delete", "pod", "p", "--wait=false"]);
    let waiter = server.kubectl_background(&["wait", "--for=delete", "pod/p", "--timeout=20s"]);
    std::thread::sleep(Duration::from_millis(500));
    server.ok(&["delete", "pod", "p", "--grace-period=0", "--force"]);
    let out = waiter.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod/p condition met\n"
    );
}

#[test]
fn watch_prints_event_types_with_output_watch_events() {
    let server = Server::start();
    let mut child = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &server.kubeconfig)
        .args([
            "get",
            "configmaps",
            "--watch-only",
            "--output-watch-events",
            "-o",
            "jsonpath={.type} {.object.metadata.name}{\"\\n\"}",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Keep writing until the watch is surely established, then change
    // and delete one object.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while !seen.iter().any(|l: &String| l.starts_with("ADDED probe")) {
        assert!(std::time::Instant::now() < deadline, "no ADDED: {seen:?}");
        server.ok(&["create", "configmap", &format!("probe{n}")]);
        n += 1;
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            seen.push(line);
        }
    }
    server.ok(&["label", "configmap", "probe0", "x=y", "--overwrite"]);
    server.ok(&["delete", "configmap", "probe0"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|l| l == "DELETED probe0") && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().any(|l| l == "DELETED probe0"), "{seen:?}");
    if seen.iter().any(|l| l == "ADDED probe0") {
        assert!(seen.iter().any(|l| l == "MODIFIED probe0"), "{seen:?}");
    }
}

#[test]
fn events_and_hpas_are_one_object_in_every_version() {
    let server = Server::start();
    server.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
  "involvedObject": {"kind": "Pod", "name": "a", "namespace": "default"},
  "reason": "Testing", "type": "Normal", "message": "hello", "count": 3,
  "source": {"component": "tester"}}"#,
    );
    let v1 = server.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "e1",
        "-o",
        "jsonpath={.apiVersion} {.regarding.name} {.note} {.deprecatedCount} {.deprecatedSource.component}",
    ]);
    assert_eq!(v1, "events.k8s.io/v1 a hello 3 tester");
    // Written through events.k8s.io, read through core.
    server.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2"},
  "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "example.com/ctl",
  "reportingInstance": "ctl-1", "action": "Poke",
  "regarding": {"kind": "Pod", "name": "b", "namespace": "default"},
  "reason": "Poked", "type": "Warning", "note": "poked b"}"#,
    );
    let core = server.ok(&[
        "get",
        "events.v1.",
        "e2",
        "-o",
        "jsonpath={.apiVersion} {.involvedObject.name} {.message} {.reportingComponent}",
    ]);
    assert_eq!(core, "v1 b poked b example.com/ctl");
    let listed = server.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(listed, "e1 e2");

    // An HPA written as autoscaling/v2 reads as v1 with its CPU target.
    server.ok(&["create", "deployment", "web", "--image=busybox"]);
    let out = server.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu-percent=55",
        "--min=1",
        "--max=4",
    ]);
    assert_eq!(out, "horizontalpodautoscaler.autoscaling/web autoscaled\n");
    let v1 = server.ok(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-o",
        "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage} {.spec.maxReplicas}",
    ]);
    assert_eq!(v1, "autoscaling/v1 55 4");
    // And a v1 write shows in v2 as a metric.
    server.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec": {"targetCPUUtilizationPercentage": 70}}"#,
    ]);
    let v2 = server.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "jsonpath={.apiVersion} {.spec.metrics[0].resource.target.averageUtilization}",
    ]);
    assert_eq!(v2, "autoscaling/v2 70");
}

#[test]
fn resource_rules_csr_approval_rbac_priority_and_storage() {
    let server = Server::start_with(&["--disable-controller-manager", "--disable-scheduler"]);
    // A CSR is approved through its approval subresource.
    let request = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQgotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K";
    server.ok_stdin(
        &["create", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
  "metadata": {{"name": "csr1"}},
  "spec": {{"request": "{request}", "signerName": "kubernetes.io/kube-apiserver-client",
           "usages": ["client auth"], "expirationSeconds": 86400}}}}"#
        ),
    );
    let out = server.ok(&["certificate", "approve", "csr1"]);
    assert_eq!(
        out,
        "certificatesigningrequest.certificates.k8s.io/csr1 approved\n"
    );
    let cond = server.ok(&[
        "get",
        "csr",
        "csr1",
        "-o",
        "jsonpath={.status.conditions[0].type}={.status.conditions[0].status}",
    ]);
    assert_eq!(cond, "Approved=True");
    // kubectl refuses to deny an approved request itself; the server
    // refuses a request that says both.
    let err = server.fails(&["certificate", "deny", "csr1"]);
    assert!(err.contains("is already Approved"), "{err}");
    let mut csr: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "csr", "csr1", "-o", "json"])).unwrap();
    csr["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "Denied", "status": "True", "reason": "No"}));
    let out = server.kubectl_stdin(
        &[
            "replace",
            "--raw",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1/approval",
            "-f",
            "-",
        ],
        &csr.to_string(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Approved and Denied conditions are mutually exclusive"),
        "{err}"
    );
    // The main resource cannot change the spec or status.
    server.ok(&[
        "patch",
        "csr",
        "csr1",
        "--type=merge",
        "-p",
        r#"{"spec": {"signerName": "example.com/other"}, "metadata": {"labels": {"a": "b"}}}"#,
    ]);
    let shown = server.ok(&[
        "get",
        "csr",
        "csr1",
        "-o",
        "jsonpath={.spec.signerName} {.metadata.labels.a}",
    ]);
    assert_eq!(shown, "kubernetes.io/kube-apiserver-client b");

    // A RoleBinding's roleRef is fixed.
    server.ok(&["create", "role", "reader", "--verb=get", "--resource=pods"]);
    server.ok(&[
        "create",
        "rolebinding",
        "rb",
        "--role=reader",
        "--user=jane",
    ]);
    let err = server.fails(&[
        "patch",
        "rolebinding",
        "rb",
        "--type=merge",
        "-p",
        r#"{"roleRef": {"name": "writer"}}"#,
    ]);
    assert!(
        err.contains(r#"The RoleBinding "rb" is invalid: roleRef: Invalid value: "#)
            && err.contains("cannot change roleRef"),
        "{err}"
    );
    let err = server
        .kubectl_stdin(
            &["create", "-f", "-"],
            r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "bad"},
  "rules": [{"apiGroups": [""], "resources": ["pods"]}]}"#,
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("rules[0].verbs: Required value: verbs must contain at least one value"),
        "{err}"
    );

    // System priority classes exist; values never change.
    let classes = server.ok(&["get", "priorityclasses", "-o", "name"]);
    assert!(
        classes.contains("priorityclass.scheduling.k8s.io/system-node-critical")
            && classes.contains("priorityclass.scheduling.k8s.io/system-cluster-critical"),
        "{classes}"
    );
    server.ok(&["create", "priorityclass", "high", "--value=1000"]);
    let err = server.fails(&[
        "patch",
        "priorityclass",
        "high",
        "--type=merge",
        "-p",
        r#"{"value": 5}"#,
    ]);
    assert!(
        err.contains("value: Forbidden: may not be changed in an update."),
        "{err}"
    );

    // StorageClass parameters are fixed too; defaults are filled in.
    server.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"},
  "provisioner": "example.com/disk", "parameters": {"type": "ssd"}}"#,
    );
    let sc = server.ok(&[
        "get",
        "sc",
        "fast",
        "-o",
        "jsonpath={.reclaimPolicy} {.volumeBindingMode}",
    ]);
    assert_eq!(sc, "Delete Immediate");
    let err = server.fails(&[
        "patch",
        "sc",
        "fast",
        "--type=merge",
        "-p",
        r#"{"parameters": {"type": "hdd"}}"#,
    ]);
    assert!(
        err.contains("parameters: Forbidden: updates to parameters are forbidden."),
        "{err}"
    );

    // A PDB takes one of minAvailable and maxUnavailable.
    let err = server
        .kubectl_stdin(
            &["create", "-f", "-"],
            r#"{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"},
  "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}}}"#,
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("minAvailable and maxUnavailable cannot be both set"),
        "{err}"
    );
}

#[test]
fn crds_are_established_for_kubectl_wait() {
    let server = Server::start_with(&["--disable-controller-manager", "--disable-scheduler"]);
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
    );
    let out = server.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ]);
    assert_eq!(
        out,
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met\n"
    );
    let stored = server.ok(&[
        "get",
        "crd",
        "widgets.example.com",
        "-o",
        "jsonpath={.status.storedVersions} {.status.acceptedNames.kind}",
    ]);
    assert_eq!(stored, r#"["v1"] Widget"#);
    let err = server
        .kubectl_stdin(
            &["create", "-f", "-"],
            r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "gadgets.example.com"},
  "spec": {"group": "example.com", "scope": "Namespaced",
           "names": {"plural": "things", "kind": "Thing"},
           "versions": [{"name": "v1", "served": true, "storage": true,
                         "schema": {"openAPIV3Schema": {"type": "object"}}}]}}"#,
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains(r#"must be spec.names.plural+"."+spec.group"#),
        "{err}"
    );
}
