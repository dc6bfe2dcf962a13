//! `kubectl debug` and the pods/ephemeralcontainers subresource, as root,
//! on a real server with a real agent and real kubectl 1.32: a debug
//! container targeting an app container sees that container's processes,
//! shows up in status.ephemeralContainerStatuses (Running, then
//! Terminated, never restarted), serves `kubectl logs -c` and `kubectl
//! debug -i`'s attach and exec; a PUT through the subresource adds one;
//! changing or removing one, or adding one through a plain pod update, is
//! refused with upstream's messages; they stop with the pod. `kubectl
//! debug --copy-to` runs a copy with a debugger sharing its processes.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::images::BUSYBOX;
use support::node::LocalNode;

/// A pod whose app container runs a process the debugger can find.
fn target_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n"
    )
}

/// The pod as JSON, read through the subresource.
fn ephemeral_view(c: &LocalNode, pod: &str) -> Value {
    let out = c.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/pods/{pod}/ephemeralcontainers"),
    ]);
    serde_json::from_str(&out).expect("pod JSON")
}

/// PUT `body` to `path` with kubectl; its stderr, with the response
/// code kubectl logs at -v=6 (it must fail).
fn put_fails(c: &LocalNode, path: &str, body: &Value) -> String {
    let out = c.server.kubectl_stdin(
        &["replace", "-v=6", "--raw", path, "-f", "-"],
        &body.to_string(),
    );
    assert!(
        !out.status.success(),
        "PUT {path} should fail, printed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kubectl_debug_runs_ephemeral_containers() {
    let c = LocalNode::start("debug-node");
    c.apply(&target_pod("web"));
    c.wait_running("web");

    // Non-interactive: the debugger runs ps in the app's PID namespace.
    c.ok(&[
        "debug",
        "web",
        "--image",
        BUSYBOX,
        "--target",
        "app",
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "ps; sleep 3",
    ]);
    let path = "{.status.ephemeralContainerStatuses[?(@.name==\"dbg\")]";
    let state_path = format!("{path}.state.terminated.reason}}");
    c.wait(&["pod", "web"], &state_path, |r| r == "Completed");
    let logs = c.ok(&["logs", "web", "-c", "dbg"]);
    assert!(
        logs.contains("sleep 3600"),
        "ps in the debug container should show the target's process:\n{logs}"
    );
    let status = c.get(&["pod", "web"], "{.status.ephemeralContainerStatuses[0]}");
    let status: Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["name"], "dbg");
    assert_eq!(status["image"], BUSYBOX, "{status}");
    assert!(
        status["containerID"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
            && status["imageID"].as_str().is_some_and(|s| !s.is_empty()),
        "{status}"
    );
    assert_eq!(status["restartCount"], 0, "{status}");
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
    // Never restarted: still the same terminated container a while later
    // (several of the worker's one-second passes).
    let id = status["containerID"].clone();
    std::thread::sleep(Duration::from_secs(4));
    let again = c.get(
        &["pod", "web"],
        "{.status.ephemeralContainerStatuses[0].containerID}",
    );
    assert_eq!(Value::from(again), id);
    // The app container was left alone.
    assert_eq!(
        c.get(
            &["pod", "web"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );

    // Interactive with piped stdin: kubectl waits for Running, attaches.
    let out = c.server.ok_stdin(
        &[
            "debug", "-i", "web", "--image", BUSYBOX, "--target", "app", "-c", "dbg2", "--", "sh",
        ],
        "echo from-stdin; ps\nexit 0\n",
    );
    assert!(
        out.contains("from-stdin") && out.contains("sleep 3600"),
        "debug -i output:\n{out}"
    );
    c.wait(
        &["pod", "web"],
        "{.status.ephemeralContainerStatuses[?(@.name==\"dbg2\")].state.terminated.exitCode}",
        |r| r == "0",
    );

    // -it as users type it (stdin here is a pipe, so kubectl warns and
    // attaches without raw mode; the container still gets a terminal).
    let out = c.server.kubectl_stdin(
        &[
            "debug", "-it", "web", "--image", BUSYBOX, "--target", "app", "-c", "dbg-tty", "--",
            "sh",
        ],
        "tty; ps\nexit 0\n",
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("/dev/pts/") && printed.contains("sleep 3600"),
        "debug -it printed:\n{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait(
        &["pod", "web"],
        "{.status.ephemeralContainerStatuses[?(@.name==\"dbg-tty\")].state.terminated.exitCode}",
        |r| r == "0",
    );

    // Changing an existing ephemeral container is refused (422).
    let sub = "/api/v1/namespaces/default/pods/web/ephemeralcontainers";
    let mut pod = ephemeral_view(&c, "web");
    assert_eq!(pod["spec"]["ephemeralContainers"][0]["name"], "dbg");
    pod["spec"]["ephemeralContainers"][0]["image"] = "example.com/other:1".into();
    let err = put_fails(&c, sub, &pod);
    assert!(
        err.contains("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed"),
        "{err}"
    );
    assert!(err.contains("422 Unprocessable Entity"), "{err}");
    // Removing one neither.
    let mut pod = ephemeral_view(&c, "web");
    pod["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let err = put_fails(&c, sub, &pod);
    assert!(
        err.contains("existing ephemeral containers \"dbg2\" may not be removed"),
        "{err}"
    );
    // A debug container with ports, or a name already taken, neither.
    let mut pod = ephemeral_view(&c, "web");
    pod["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "app", "image": BUSYBOX,
            "ports": [{"containerPort": 80}]}));
    let err = put_fails(&c, sub, &pod);
    assert!(
        err.contains("spec.ephemeralContainers[3].name: Duplicate value: \"app\"")
            && err.contains("spec.ephemeralContainers[3].ports: Forbidden: cannot be set for an Ephemeral Container"),
        "{err}"
    );
    // Through a plain pod update, ephemeralContainers do not change.
    let patch = format!(
        r#"[{{"op":"add","path":"/spec/ephemeralContainers/-","value":{{"name":"sneaky","image":"{BUSYBOX}"}}}}]"#
    );
    let err = c
        .server
        .fails(&["patch", "pod", "web", "--type=json", "-p", &patch]);
    assert!(
        err.contains("spec: Forbidden: pod updates may not change fields other than"),
        "{err}"
    );
    assert_eq!(
        ephemeral_view(&c, "web")["spec"]["ephemeralContainers"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // Adding one through the subresource with a PUT (the conformance
    // test's path) is allowed, and it runs.
    let mut pod = ephemeral_view(&c, "web");
    pod["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "dbg4", "image": BUSYBOX,
            "imagePullPolicy": "Never", "command": ["echo", "via-put"]}));
    let body = pod.to_string();
    c.server
        .ok_stdin(&["replace", "--raw", sub, "-f", "-"], &body);
    c.wait(
        &["pod", "web"],
        "{.status.ephemeralContainerStatuses[?(@.name==\"dbg4\")].state.terminated.reason}",
        |r| r == "Completed",
    );
    assert_eq!(c.ok(&["logs", "web", "-c", "dbg4"]).trim(), "via-put");

    // A long-running debug container shows Running and takes exec.
    c.ok(&[
        "debug", "web", "--image", BUSYBOX, "-c", "dbg3", "--", "sleep", "3600",
    ]);
    c.wait(
        &["pod", "web"],
        "{.status.ephemeralContainerStatuses[?(@.name==\"dbg3\")].state.running.startedAt}",
        |r| !r.is_empty(),
    );
    let out = c.ok(&["exec", "web", "-c", "dbg3", "--", "echo", "marco"]);
    assert_eq!(out.trim(), "marco");

    // --copy-to: a copy of the pod with a debug container added, sharing
    // its process namespace (kubectl 1.32 sets shareProcessNamespace only
    // when --share-processes is given), so the debugger sees the app; the
    // original is left alone.
    c.ok(&[
        "debug",
        "web",
        "--copy-to",
        "web-copy",
        "--share-processes",
        "--image",
        BUSYBOX,
        "-c",
        "dbgc",
        "--",
        "sh",
        "-c",
        "while ! ps | grep -q '[s]leep 3600'; do sleep 1; done; echo found-app; sleep 3600",
    ]);
    c.wait_running("web-copy");
    assert_eq!(
        c.get(&["pod", "web-copy"], "{.spec.shareProcessNamespace}"),
        "true"
    );
    let seen = support::eventually(Duration::from_secs(60), || {
        c.server
            .kubectl(&["logs", "web-copy", "-c", "dbgc"])
            .status
            .success()
            && c.ok(&["logs", "web-copy", "-c", "dbgc"])
                .contains("found-app")
    });
    assert!(
        seen,
        "the copy's debugger should see the app's process:\n{}",
        c.ok(&["logs", "web-copy", "-c", "dbgc"])
    );
    assert_eq!(
        c.get(&["pod", "web"], "{.spec.containers[*].name}"),
        "app",
        "the original pod is unchanged"
    );
    c.ok(&["delete", "pod", "web-copy", "--wait=true"]);

    // The debug containers go with the pod, stopped in its grace period.
    c.ok(&["delete", "pod", "web", "--wait=true"]);
    c.wait_events("web", &["Stopping container dbg3"]);
    let ok = support::eventually(Duration::from_secs(60), || {
        c.runtime_ps().lines().nth(1).is_none()
    });
    assert!(ok, "containers left:\n{}", c.runtime_ps());
}
