//! Pod subresources the scheduler and `kubectl drain` use (binding,
//! eviction), driven through the real kubectl; each step checks what
//! kubectl prints.

mod support;

use support::Server;

/// A pod no scheduler picks up, so only the test binds it.
fn unscheduled_pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "{name}", "labels": {{"app": "web"}}}},
  "spec": {{"schedulerName": "nobody", "containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
    )
}

fn binding(pod: &str, node: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Binding", "metadata": {{"name": "{pod}"}},
  "target": {{"kind": "Node", "name": "{node}"}}}}"#
    )
}

#[test]
fn binding_assigns_a_pod_once() {
    let server = Server::start();
    server.ok_stdin(&["create", "-f", "-"], &unscheduled_pod("p"));
    let out = server.ok_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p/binding",
            "-f",
            "-",
        ],
        &binding("p", "node-1"),
    );
    let status: serde_json::Value = serde_json::from_str(&out).expect("a Status");
    assert_eq!(status["status"], "Success", "{out}");
    assert_eq!(status["code"], 201, "{out}");
    let shown = server.ok(&[
        "get",
        "pod",
        "p",
        "-o",
        r#"jsonpath={.spec.nodeName} {.status.conditions[?(@.type=="PodScheduled")].status}"#,
    ]);
    assert_eq!(shown, "node-1 True");

    // A second binding is a conflict, worded as upstream words it.
    let err = server
        .kubectl_stdin(
            &[
                "create",
                "--raw",
                "/api/v1/namespaces/default/pods/p/binding",
                "-f",
                "-",
            ],
            &binding("p", "node-2"),
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains(r#"Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node "node-1""#),
        "{err}"
    );

    // A missing pod is 404; a name that differs from the URL's is 400.
    let err = server.kubectl_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/nope/binding",
            "-f",
            "-",
        ],
        &binding("nope", "node-1"),
    );
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(err.contains(r#"pods "nope" not found"#), "{err}");
    let err = server.kubectl_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p/binding",
            "-f",
            "-",
        ],
        &binding("other", "node-1"),
    );
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(
        err.contains("name in URL does not match name in Binding object"),
        "{err}"
    );
}

#[test]
fn legacy_bindings_resource_and_discovery() {
    let server = Server::start();
    server.ok_stdin(&["create", "-f", "-"], &unscheduled_pod("q"));
    server.ok_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/bindings",
            "-f",
            "-",
        ],
        &binding("q", "node-9"),
    );
    let node = server.ok(&["get", "pod", "q", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node, "node-9");
    // A binding without a target node is invalid.
    server.ok_stdin(&["create", "-f", "-"], &unscheduled_pod("r"));
    let out = server.kubectl_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/r/binding",
            "-f",
            "-",
        ],
        r#"{"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "r"}, "target": {}}"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("target.name: Required value"), "{err}");

    let discovery = server.ok(&["get", "--raw", "/api/v1"]);
    let doc: serde_json::Value = serde_json::from_str(&discovery).unwrap();
    let binding = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/binding")
        .expect("pods/binding in discovery");
    assert_eq!(binding["verbs"], serde_json::json!(["create"]));
    assert_eq!(binding["kind"], "Binding");
}

/// Pods on node `n1` that kubectl sees running and ready, guarded by a
/// PDB that allows `allowed` disruptions (its status written here, as
/// the disruption controller would, which this server does not run).
fn guarded_pods(server: &Server, pods: &[&str], allowed: i64) {
    server.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#,
    );
    for pod in pods {
        server.ok_stdin(
            &["create", "-f", "-"],
            &format!(
                r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "{pod}", "labels": {{"app": "web"}}}},
  "spec": {{"nodeName": "n1", "containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
            ),
        );
        server.ok(&[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}"#,
        ]);
    }
    server.ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=1",
    ]);
    let healthy = pods.len();
    server.ok(&[
        "patch",
        "pdb",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status": {{"observedGeneration": 1, "disruptionsAllowed": {allowed},
                "currentHealthy": {healthy}, "desiredHealthy": 1, "expectedPods": {healthy}}}}}"#
        ),
    ]);
}

fn eviction(pod: &str, api_version: &str) -> String {
    format!(
        r#"{{"apiVersion": "{api_version}", "kind": "Eviction",
  "metadata": {{"name": "{pod}", "namespace": "default"}},
  "deleteOptions": {{"gracePeriodSeconds": 0}}}}"#
    )
}

const NO_CONTROLLERS: &[&str] = &["--disable-controller-manager", "--disable-scheduler"];

#[test]
fn eviction_spends_the_budget_then_answers_429() {
    let server = Server::start_with(NO_CONTROLLERS);
    guarded_pods(&server, &["a", "b"], 1);
    let path = "/api/v1/namespaces/default/pods/a/eviction";
    let out = server.ok_stdin(
        &["create", "--raw", path, "-f", "-"],
        &eviction("a", "policy/v1"),
    );
    assert!(out.contains(r#""status":"Success""#), "{out}");
    let err = server.fails(&["get", "pod", "a"]);
    assert!(err.contains(r#"pods "a" not found"#), "{err}");
    let status = server.ok(&[
        "get",
        "pdb",
        "web",
        "-o",
        "jsonpath={.status.disruptionsAllowed} {.status.disruptedPods.a}",
    ]);
    let (allowed, when) = status.split_once(' ').unwrap();
    assert_eq!(allowed, "0", "{status}");
    assert!(when.ends_with('Z'), "{status}");

    // The budget is spent: b stays, with upstream's 429.
    let path = "/api/v1/namespaces/default/pods/b/eviction";
    let out = server.kubectl_stdin(
        &["create", "--raw", path, "-f", "-"],
        &eviction("b", "policy/v1beta1"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget."
        ),
        "{err}"
    );
    server.ok(&["get", "pod", "b"]);
}

#[test]
fn drain_evicts_what_the_budget_allows() {
    let server = Server::start_with(NO_CONTROLLERS);
    guarded_pods(&server, &["a", "b"], 1);
    let out = server.kubectl(&["drain", "n1", "--force", "--grace-period=0", "--timeout=3s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("node/n1 cordoned"), "{stdout}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    // Exactly one of the two went; the node is cordoned.
    let left = server.ok(&["get", "pods", "-o", "name"]);
    assert_eq!(left.lines().count(), 1, "{left}");
    let gone = if left.trim() == "pod/a" { "b" } else { "a" };
    assert!(stdout.contains(&format!("pod/{gone} evicted")), "{stdout}");
    let unschedulable = server.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(unschedulable, "true");
}

fn pod_on(name: &str, node: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
  "spec": {{"nodeName": "{node}", "containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
    )
}

#[test]
fn field_selectors_per_resource() {
    let server = Server::start_with(NO_CONTROLLERS);
    server.ok_stdin(&["create", "-f", "-"], &pod_on("a", "n1"));
    server.ok_stdin(&["create", "-f", "-"], &pod_on("b", "n2"));
    let get = |args: &[&str]| server.ok(args).trim().to_string();
    let on_n1 = get(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=n1",
        "-o",
        "name",
    ]);
    assert_eq!(on_n1, "pod/a");
    let legacy = get(&[
        "get",
        "pods",
        "--field-selector",
        "spec.host=n2",
        "-o",
        "name",
    ]);
    assert_eq!(legacy, "pod/b");
    let both = get(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending,spec.nodeName!=n1,spec.hostNetwork=false",
        "-o",
        "name",
    ]);
    assert_eq!(both, "pod/b");
    let all_ns = get(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "metadata.namespace=default,metadata.name=a",
        "-o",
        "name",
    ]);
    assert_eq!(all_ns, "pod/a");

    server.ok(&[
        "create",
        "secret",
        "generic",
        "typed",
        "--type=example.com/thing",
        "--from-literal=k=v",
    ]);
    server.ok(&["create", "secret", "generic", "plain", "--from-literal=k=v"]);
    let typed = get(&[
        "get",
        "secrets",
        "--field-selector",
        "type=example.com/thing",
        "-o",
        "name",
    ]);
    assert_eq!(typed, "secret/typed");
    let active = get(&[
        "get",
        "ns",
        "--field-selector",
        "status.phase=Active,metadata.name=default",
        "-o",
        "name",
    ]);
    assert_eq!(active, "namespace/default");

    server.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
  "involvedObject": {"kind": "Pod", "name": "a", "namespace": "default"},
  "reason": "Testing", "type": "Warning", "source": {"component": "tester"}, "message": "hi"}"#,
    );
    let events = get(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=a,type=Warning,source=tester",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert_eq!(events, "Testing");
    let none = get(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=b",
        "-o",
        "name",
    ]);
    assert_eq!(none, "");

    // Unknown labels: 400 with upstream's words, per resource.
    let err = server.fails(&["get", "pods", "--field-selector", "spec.foo=x"]);
    assert!(
        err.starts_with("Error from server (BadRequest)")
            && err.contains(r#"field selector "spec.foo=x": field label not supported: spec.foo"#),
        "{err}"
    );
    let err = server.fails(&["get", "configmaps", "--field-selector", "data.x=y"]);
    assert!(
        err.contains(
            r#""data.x" is not a known field selector: only "metadata.name", "metadata.namespace""#
        ),
        "{err}"
    );
    let err = server.fails(&["get", "jobs", "--field-selector", "spec.x=y"]);
    assert!(
        err.contains(r#"field label "spec.x" not supported for "Job""#),
        "{err}"
    );
}
