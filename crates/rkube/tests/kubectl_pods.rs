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
