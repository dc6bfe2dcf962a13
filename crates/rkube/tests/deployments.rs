//! Deployments, ReplicaSets and ReplicationControllers on simulated nodes,
//! driven by the real kubectl: rollout, scaling, recovery from deleted
//! pods, rollout history/undo/pause/resume/restart, Recreate, the
//! progress deadline, adoption and cascading deletion.

mod support;

use std::time::Duration;

use support::agent::Agent;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(60);

fn wait_for(server: &Server, args: &[&str], path: &str, want: &str) {
    server.wait_jsonpath(WAIT, args, path, want, || {
        server.ok(&["get", "deploy,rs,pods", "-o", "wide"])
    });
}

/// Names of the pods of `selector` that are not being deleted.
fn live_pods(server: &Server, selector: &str) -> Vec<String> {
    let out = server.jsonpath(
        &["get", "pods", "-l", selector],
        "{range .items[?(@.metadata.deletionTimestamp)]}-{.metadata.name} {end}{range .items[*]}{.metadata.name} {end}",
    );
    let deleting: Vec<&str> = out
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('-'))
        .collect();
    out.split_whitespace()
        .filter(|w| !w.starts_with('-') && !deleting.contains(w))
        .map(String::from)
        .collect()
}

fn wait_live_pods(server: &Server, selector: &str, n: usize) -> Vec<String> {
    let mut last = Vec::new();
    let ok = eventually(WAIT, || {
        last = live_pods(server, selector);
        last.len() == n
    });
    assert!(ok, "want {n} pods for {selector}, have {last:?}");
    last
}

/// The ReplicaSets' spec.replicas, sorted (kubectl lists by name, and
/// names are hashes).
fn rs_sizes(server: &Server, selector: &str) -> String {
    let out = server.jsonpath(&["get", "rs", "-l", selector], "{.items[*].spec.replicas}");
    let mut sizes: Vec<&str> = out.split_whitespace().collect();
    sizes.sort();
    sizes.join(" ")
}

fn wait_rs_sizes(server: &Server, selector: &str, want: &str) {
    let mut last = String::new();
    let ok = eventually(WAIT, || {
        last = rs_sizes(server, selector);
        last == want
    });
    assert!(
        ok,
        "replica sets of {selector}: want {want:?}, have {last:?}"
    );
}

fn rollout_status(server: &Server, what: &str) -> String {
    server.ok(&["rollout", "status", what, "--timeout=90s"])
}

fn cluster() -> (Server, Agent) {
    let server = Server::start();
    let agent = Agent::simulate(&server, 2, "sim", &[]);
    wait_for(
        &server,
        &["get", "nodes"],
        "{.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        "True True",
    );
    (server, agent)
}

#[test]
fn deployment_rolls_out_scales_and_replaces_deleted_pods() {
    let (server, _agent) = cluster();
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=3",
    ]);
    let out = rollout_status(&server, "deployment/web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    // One ReplicaSet named by its pod-template-hash, with kubectl's columns.
    let rs = server.ok(&["get", "rs", "-l", "app=web"]);
    let mut lines = rs.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[1..4], ["3", "3", "3"], "{rs}");
    assert!(lines.next().is_none(), "{rs}");
    let hash = server.jsonpath(
        &["get", "rs", "-l", "app=web"],
        "{.items[0].metadata.labels.pod-template-hash}",
    );
    assert_eq!(row[0], format!("web-{hash}"));
    assert_eq!(
        server.jsonpath(
            &["get", "rs", row[0]],
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "1"
    );
    let owner = server.jsonpath(&["get", "rs", row[0]], "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}");
    assert_eq!(owner, "Deployment/web/true");

    let deploy = server.ok(&["get", "deployment", "web"]);
    let header: Vec<&str> = deploy.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let row: Vec<&str> = deploy.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "3/3", "3", "3"], "{deploy}");
    let pods = server.ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
    assert_eq!(
        pods.lines()
            .filter(|l| l.contains("Running") && l.contains("1/1"))
            .count(),
        3,
        "{pods}"
    );
    let conditions = server.jsonpath(
        &["get", "deploy", "web"],
        "{range .status.conditions[*]}{.type}={.reason} {end}",
    );
    assert!(
        conditions.contains("Available=MinimumReplicasAvailable"),
        "{conditions}"
    );
    assert!(
        conditions.contains("Progressing=NewReplicaSetAvailable"),
        "{conditions}"
    );

    // Scale up and down through the scale subresource.
    server.ok(&["scale", "deployment/web", "--replicas=5"]);
    wait_for(
        &server,
        &["get", "deploy", "web"],
        "{.status.availableReplicas}/{.status.replicas}",
        "5/5",
    );
    server.ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_for(
        &server,
        &["get", "deploy", "web"],
        "{.status.readyReplicas}/{.status.replicas}",
        "2/2",
    );
    let before = wait_live_pods(&server, "app=web", 2);

    // A deleted pod is replaced.
    server.ok(&["delete", "pod", &before[0], "--wait=false"]);
    let mut now = Vec::new();
    let replaced = eventually(WAIT, || {
        now = live_pods(&server, "app=web");
        now.len() == 2 && !now.contains(&before[0])
    });
    assert!(replaced, "pods after deleting {}: {now:?}", before[0]);
    rollout_status(&server, "deployment/web");
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=ReplicaSet",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("SuccessfulDelete"), "{events}");

    // A rolling update with maxSurge 1 and maxUnavailable 0 goes one pod
    // at a time: the events name every step.
    server.ok(&[
        "create",
        "deployment",
        "surge",
        "--image=busybox:1.36",
        "--replicas=3",
    ]);
    server.ok(&[
        "patch",
        "deployment/surge",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
    ]);
    rollout_status(&server, "deployment/surge");
    let old = server.jsonpath(
        &["get", "rs", "-l", "app=surge"],
        "{.items[0].metadata.name}",
    );
    server.ok(&["set", "image", "deployment/surge", "busybox=busybox:1.37"]);
    rollout_status(&server, "deployment/surge");
    let new = server.jsonpath(
        &["get", "rs", "-l", "app=surge"],
        "{.items[?(@.spec.replicas==3)].metadata.name}",
    );
    assert_ne!(old, new);
    let mut messages = String::new();
    let all_steps = eventually(WAIT, || {
        messages = server.jsonpath(
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=surge",
            ],
            "{range .items[*]}{.message}\n{end}",
        );
        [
            format!("Scaled up replica set {new} from 0 to 1"),
            format!("Scaled down replica set {old} from 3 to 2"),
            format!("Scaled up replica set {new} from 1 to 2"),
            format!("Scaled down replica set {old} from 2 to 1"),
            format!("Scaled up replica set {new} from 2 to 3"),
            format!("Scaled down replica set {old} from 1 to 0"),
        ]
        .iter()
        .all(|m| messages.lines().any(|l| l == m))
    });
    assert!(all_steps, "{messages}");
    assert!(
        !messages.contains("from 0 to 2") && !messages.contains("from 3 to 1"),
        "{messages}"
    );

    // Deleting the Deployment takes its ReplicaSet and pods along.
    server.ok(&["delete", "deployment", "web"]);
    wait_for(
        &server,
        &["get", "rs,pods", "-l", "app=web"],
        "{.items[*].metadata.name}",
        "",
    );
}

fn revisions(server: &Server) -> Vec<(String, String)> {
    let out = server.ok(&["rollout", "history", "deployment/web"]);
    out.lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(2, char::is_whitespace);
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap_or("").trim().to_string(),
            )
        })
        .collect()
}

fn image(server: &Server) -> String {
    server.jsonpath(
        &["get", "deploy", "web"],
        "{.spec.template.spec.containers[0].image}",
    )
}

#[test]
fn rollout_history_undo_pause_resume_restart() {
    let (server, _agent) = cluster();
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    server.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=first",
    ]);
    rollout_status(&server, "deployment/web");

    server.ok(&["set", "image", "deployment/web", "busybox=busybox:1.37"]);
    server.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ]);
    let out = rollout_status(&server, "deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_rs_sizes(&server, "app=web", "0 2");
    let history = revisions(&server);
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].0, "1");
    assert_eq!(history[1], ("2".to_string(), "second".to_string()));
    let r1 = server.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(r1.contains("busybox:1.36"), "{r1}");
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Deployment",
    ]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");

    // Undo goes back to revision 1's template, which becomes revision 3.
    let out = server.ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&server, "deployment/web");
    assert_eq!(image(&server), "busybox:1.36");
    let history = revisions(&server);
    let numbers: Vec<&str> = history.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(numbers, ["2", "3"], "{history:?}");
    assert_eq!(
        server.jsonpath(
            &["get", "deploy", "web"],
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "3"
    );
    wait_rs_sizes(&server, "app=web", "0 2");

    // Paused: template changes wait; resumed: they roll out.
    server.ok(&["rollout", "pause", "deployment/web"]);
    wait_for(
        &server,
        &["get", "deploy", "web"],
        "{.status.conditions[?(@.type==\"Progressing\")].reason}",
        "DeploymentPaused",
    );
    server.ok(&["set", "image", "deployment/web", "busybox=busybox:1.38"]);
    std::thread::sleep(Duration::from_secs(2)); // nothing to poll for: absence of a change
    assert_eq!(rs_sizes(&server, "app=web"), "0 2");
    let undo = server.fails(&["rollout", "undo", "deployment/web"]);
    assert!(undo.contains("paused"), "{undo}");
    server.ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&server, "deployment/web");
    assert_eq!(revisions(&server).len(), 3);

    // Restart: a new template annotation, so a new ReplicaSet.
    server.ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&server, "deployment/web");
    let restarted = server.jsonpath(
        &["get", "deploy", "web"],
        "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    );
    assert!(!restarted.is_empty());
    assert_eq!(revisions(&server).len(), 4);
    wait_live_pods(&server, "app=web", 2);
}

const RECREATE: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  strategy: {type: Recreate}
  revisionHistoryLimit: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: busybox, image: busybox:1.36}]
";

#[test]
fn recreate_history_limit_and_progress_deadline() {
    let (server, _agent) = cluster();
    server.ok_stdin(&["apply", "-f", "-"], RECREATE);
    rollout_status(&server, "deployment/web");
    for tag in ["1.37", "1.38"] {
        server.ok(&[
            "set",
            "image",
            "deployment/web",
            &format!("busybox=busybox:{tag}"),
        ]);
        rollout_status(&server, "deployment/web");
    }
    // revisionHistoryLimit 1: the oldest scaled-down set is deleted.
    wait_rs_sizes(&server, "app=web", "0 2");
    let images = server.jsonpath(
        &["get", "pods", "-l", "app=web"],
        "{.items[*].spec.containers[0].image}",
    );
    assert_eq!(images, "busybox:1.38 busybox:1.38");

    // Scaling a rollout that is stuck halfway spreads the change over
    // both ReplicaSets in proportion (4 old + 1 new, max 5, scaled to 8
    // with surge 1: 9 allowed, 7.2 -> 7 old and 1.8 -> 2 new).
    server.ok(&[
        "create",
        "deployment",
        "prop",
        "--image=busybox:1.36",
        "--replicas=4",
    ]);
    server.ok(&[
        "patch",
        "deployment/prop",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
    ]);
    rollout_status(&server, "deployment/prop");
    server.ok(&[
        "patch",
        "deployment/prop",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"nowhere":"true"}}}}}"#,
    ]);
    wait_rs_sizes(&server, "app=prop", "1 4");
    server.ok(&["scale", "deployment/prop", "--replicas=8"]);
    wait_rs_sizes(&server, "app=prop", "2 7");
    wait_for(
        &server,
        &["get", "deploy", "prop"],
        "{.status.replicas}/{.status.updatedReplicas}/{.status.availableReplicas}",
        "9/2/7",
    );

    // Pods that can never be scheduled: the deadline passes.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n  replicas: 1\n  \
         progressDeadlineSeconds: 3\n  selector: {matchLabels: {app: stuck}}\n  template:\n    metadata: {labels: {app: stuck}}\n    \
         spec:\n      nodeSelector: {nowhere: \"true\"}\n      containers: [{name: c, image: busybox:1.36}]\n",
    );
    let out = server.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
    let cond = server.jsonpath(&["get", "deploy", "stuck"], "{.status.conditions[?(@.type==\"Progressing\")].status}/{.status.conditions[?(@.type==\"Progressing\")].reason}");
    assert_eq!(cond, "False/ProgressDeadlineExceeded");
}

const RC: &str = "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: 2
  selector: {app: legacy}
  template:
    metadata: {labels: {app: legacy}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
";

const ORPHAN: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: orphan
  labels: {app: legacy}
spec:
  containers: [{name: c, image: busybox:1.36}]
";

#[test]
fn replication_controller_keeps_count_adopts_and_cascades() {
    let (server, _agent) = cluster();
    server.ok_stdin(&["apply", "-f", "-"], RC);
    wait_for(
        &server,
        &["get", "rc", "legacy"],
        "{.status.replicas}/{.status.readyReplicas}/{.status.availableReplicas}",
        "2/2/2",
    );
    let rc = server.ok(&["get", "rc", "legacy"]);
    let header: Vec<&str> = rc.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let pods = wait_live_pods(&server, "app=legacy", 2);
    assert!(pods.iter().all(|p| p.starts_with("legacy-")), "{pods:?}");

    // A deleted pod is replaced; a scale up adds pods.
    server.ok(&["delete", "pod", &pods[0], "--wait=false"]);
    let mut now = Vec::new();
    assert!(
        eventually(WAIT, || {
            now = live_pods(&server, "app=legacy");
            now.len() == 2 && !now.contains(&pods[0])
        }),
        "{now:?}"
    );
    server.ok(&["scale", "rc", "legacy", "--replicas=3"]);
    wait_for(
        &server,
        &["get", "rc", "legacy"],
        "{.status.readyReplicas}",
        "3",
    );

    // A matching orphan is adopted, and one pod too many is deleted.
    server.ok_stdin(&["apply", "-f", "-"], ORPHAN);
    // Adopted means: it carries the controller's reference, or it was
    // already deleted as the excess pod (an orphan would not be).
    let adopted = eventually(WAIT, || {
        let owner = server.jsonpath(
            &["get", "pods", "-l", "app=legacy"],
            "{.items[?(@.metadata.name==\"orphan\")].metadata.ownerReferences[0].name}",
        );
        let present = live_pods(&server, "app=legacy").contains(&"orphan".to_string());
        owner == "legacy" || !present
    });
    assert!(adopted);
    wait_live_pods(&server, "app=legacy", 3);
    wait_for(&server, &["get", "rc", "legacy"], "{.status.replicas}", "3");
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=legacy",
    ]);
    assert!(events.contains("SuccessfulDelete"), "{events}");

    server.ok(&["delete", "rc", "legacy"]);
    wait_for(
        &server,
        &["get", "pods", "-l", "app=legacy"],
        "{.items[*].metadata.name}",
        "",
    );
}
