//! The upstream conformance behaviours of the apps controllers —
//! ReplicaSet, ReplicationController, Deployment, DaemonSet and
//! ControllerRevision — on simulated nodes, driven by the real kubectl.
//! Each test names the conformance entries it covers (upstream
//! test/e2e/apps/{replica_set,rc,deployment,daemon_set,controller_revision}.go).

mod support;

use std::time::Duration;

use support::agent::simulated_cluster;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(90);

fn wait_for(server: &Server, args: &[&str], path: &str, want: &str) {
    server.wait_jsonpath(WAIT, args, path, want, || {
        server.ok(&["get", "deploy,rs,rc,ds,pods", "-o", "wide"])
    });
}

/// Names and owner names of the pods `selector` picks, as
/// `name=owner` words sorted, without the ones being deleted.
fn pod_owners(server: &Server, selector: &str) -> Vec<String> {
    let out = server.jsonpath(
        &["get", "pods", "-l", selector],
        "{range .items[*]}{.metadata.name}={.metadata.ownerReferences[0].name}/{.metadata.deletionTimestamp} {end}",
    );
    let mut v: Vec<String> = out
        .split_whitespace()
        .filter(|w| w.ends_with('/'))
        .map(|w| w.trim_end_matches('/').to_string())
        .collect();
    v.sort();
    v
}

/// The Progressing reasons a Deployment's watch events carried since
/// resourceVersion `rv`, in order (a watch from an old resourceVersion
/// replays every change since, so no transient state is missed).
fn progressing_history(server: &Server, name: &str, rv: &str) -> Vec<String> {
    let out = server.ok(&[
        "get",
        "--raw",
        &format!(
            "/apis/apps/v1/namespaces/default/deployments?watch=1&resourceVersion={rv}\
             &fieldSelector=metadata.name%3D{name}&timeoutSeconds=1"
        ),
    ]);
    let mut reasons: Vec<String> = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        let conditions = ev["object"]["status"]["conditions"].as_array().cloned();
        let reason = conditions
            .unwrap_or_default()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .and_then(|c| c["reason"].as_str().map(String::from));
        if let Some(r) = reason {
            if reasons.last() != Some(&r) {
                reasons.push(r);
            }
        }
    }
    reasons
}

fn list_rv(server: &Server) -> String {
    let list = server.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments",
    ]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(!rv.is_empty(), "{list}");
    rv.to_string()
}

fn wait_history(server: &Server, name: &str, rv: &str, want: &[&str]) {
    let mut last = Vec::new();
    let ok = eventually(WAIT, || {
        last = progressing_history(server, name, rv);
        let mut it = last.iter();
        want.iter().all(|w| it.any(|r| r == w))
    });
    assert!(
        ok,
        "want Progressing reasons {want:?} in order, saw {last:?}"
    );
}

fn raw_delete_collection(server: &Server, path: &str) {
    server.ok(&["delete", "--raw", path]);
}

const ORPHAN_POD: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: pod-adoption-release
  labels: {name: pod-adoption-release}
spec:
  containers: [{name: c, image: busybox:1.36}]
";

const RS: &str = "
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: pod-adoption-release
  labels: {e2e: rs-conformance}
spec:
  replicas: 1
  selector: {matchLabels: {name: pod-adoption-release}}
  template:
    metadata: {labels: {name: pod-adoption-release}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
";

/// Replica Set, adopt matching pods and release non matching pods;
/// ReplicaSet, completes the scaling of a ReplicaSet subresource;
/// ReplicaSet, is created, Replaced and Patched; ReplicaSet, status
/// sub-resource; ReplicaSet, list and delete a collection of ReplicaSets.
#[test]
fn replicaset_adopts_releases_scales_and_lifecycle() {
    let (server, _agent) = simulated_cluster("rs", 2, WAIT);
    // An orphan with matching labels is adopted instead of a new pod made.
    server.ok_stdin(&["apply", "-f", "-"], ORPHAN_POD);
    wait_for(
        &server,
        &["get", "pod", "pod-adoption-release"],
        "{.status.phase}",
        "Running",
    );
    server.ok_stdin(&["apply", "-f", "-"], RS);
    wait_for(
        &server,
        &["get", "pod", "pod-adoption-release"],
        "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}",
        "ReplicaSet/pod-adoption-release/true",
    );
    wait_for(
        &server,
        &["get", "rs", "pod-adoption-release"],
        "{.status.replicas}/{.status.readyReplicas}/{.status.availableReplicas}",
        "1/1/1",
    );
    assert_eq!(
        pod_owners(&server, "name=pod-adoption-release"),
        ["pod-adoption-release=pod-adoption-release"]
    );

    // Relabelled, the pod is released and replaced.
    server.ok(&[
        "label",
        "pod",
        "pod-adoption-release",
        "name=not-matching",
        "--overwrite",
    ]);
    wait_for(
        &server,
        &["get", "pod", "pod-adoption-release"],
        "{.metadata.ownerReferences}",
        "",
    );
    let mut owners = Vec::new();
    assert!(
        eventually(WAIT, || {
            owners = pod_owners(&server, "name=pod-adoption-release");
            owners.len() == 1 && owners[0].starts_with("pod-adoption-release-")
        }),
        "{owners:?}"
    );

    // The scale subresource reads and resizes it.
    let scale = server.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/replicasets/pod-adoption-release/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "name=pod-adoption-release");
    server.ok(&[
        "patch",
        "rs",
        "pod-adoption-release",
        "--subresource=scale",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    wait_for(
        &server,
        &["get", "rs", "pod-adoption-release"],
        "{.spec.replicas}/{.status.readyReplicas}",
        "3/3",
    );

    // Replaced and patched: a replace changes the template's image; a
    // patch resizes it; the status follows with observedGeneration.
    let mut rs: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "rs", "pod-adoption-release", "-o", "json"]))
            .unwrap();
    rs["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.37".into();
    server.ok_stdin(&["replace", "-f", "-"], &rs.to_string());
    server.ok(&[
        "patch",
        "rs",
        "pod-adoption-release",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2},"metadata":{"labels":{"patched":"true"}}}"#,
    ]);
    let generation = server.jsonpath(
        &["get", "rs", "pod-adoption-release"],
        "{.metadata.generation}",
    );
    wait_for(
        &server,
        &["get", "rs", "pod-adoption-release"],
        "{.status.observedGeneration}/{.status.replicas}/{.status.availableReplicas}",
        &format!("{generation}/2/2"),
    );

    // The status subresource: read, and a written condition kept.
    let st = server.ok(&[
        "get",
        "rs",
        "pod-adoption-release",
        "--subresource=status",
        "-o",
        "jsonpath={.status.replicas}",
    ]);
    assert_eq!(st, "2");
    server.ok(&[
        "patch",
        "rs",
        "pod-adoption-release",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"StatusUpdate","status":"True","reason":"E2E","message":"Set from e2e test"}]}}"#,
    ]);
    wait_for(
        &server,
        &["get", "rs", "pod-adoption-release"],
        "{.status.conditions[?(@.type==\"StatusUpdate\")].reason}",
        "E2E",
    );

    // A collection deleted by label, with its pods.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &RS.replace("pod-adoption-release", "second"),
    );
    wait_for(
        &server,
        &["get", "rs", "-l", "e2e=rs-conformance"],
        "{.items[*].metadata.name}",
        "pod-adoption-release second",
    );
    raw_delete_collection(
        &server,
        "/apis/apps/v1/namespaces/default/replicasets?labelSelector=e2e%3Drs-conformance",
    );
    wait_for(
        &server,
        &["get", "rs", "-l", "e2e=rs-conformance"],
        "{.items[*].metadata.name}",
        "",
    );
    wait_for(
        &server,
        &["get", "pods", "-l", "name in (pod-adoption-release,second)"],
        "{.items[*].metadata.name}",
        "",
    );
}

const QUOTA: &str = "
apiVersion: v1
kind: ResourceQuota
metadata:
  name: condition-test
spec:
  hard: {pods: '2'}
";

const RC: &str = "
apiVersion: v1
kind: ReplicationController
metadata:
  name: condition-test
  labels: {e2e: rc-conformance}
spec:
  replicas: 3
  selector: {name: condition-test}
  template:
    metadata: {labels: {name: condition-test}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
";

/// Replication Controller, check for issues like exceeding allocated
/// quota; get and update ReplicationController scale; release pods;
/// lifecycle (patch, status, delete collection).
#[test]
fn replication_controller_quota_failure_scale_release_lifecycle() {
    let (server, _agent) = simulated_cluster("rc", 2, WAIT);
    server.ok_stdin(&["apply", "-f", "-"], QUOTA);
    wait_for(
        &server,
        &["get", "quota", "condition-test"],
        "{.status.hard.pods}/{.status.used.pods}",
        "2/0",
    );
    server.ok_stdin(&["apply", "-f", "-"], RC);
    wait_for(
        &server,
        &["get", "rc", "condition-test"],
        "{.status.conditions[?(@.type==\"ReplicaFailure\")].status}/{.status.conditions[?(@.type==\"ReplicaFailure\")].reason}",
        "True/FailedCreate",
    );
    let msg = server.jsonpath(
        &["get", "rc", "condition-test"],
        "{.status.conditions[?(@.type==\"ReplicaFailure\")].message}",
    );
    assert!(msg.contains("exceeded quota"), "{msg}");

    // Scaled within the quota through the scale subresource, the
    // condition goes away.
    let scale = server.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/condition-test/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3);
    server.ok(&[
        "patch",
        "rc",
        "condition-test",
        "--subresource=scale",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    wait_for(
        &server,
        &["get", "rc", "condition-test"],
        "{.status.conditions}/{.status.readyReplicas}",
        "/2",
    );

    // A relabelled pod is released (and, the quota full, not replaced
    // until the quota grows).
    let pod = pod_owners(&server, "name=condition-test")[0]
        .split('=')
        .next()
        .unwrap()
        .to_string();
    server.ok(&["label", "pod", &pod, "name=released", "--overwrite"]);
    wait_for(
        &server,
        &["get", "pod", &pod],
        "{.metadata.ownerReferences}",
        "",
    );
    server.ok(&["delete", "quota", "condition-test"]);
    wait_for(
        &server,
        &["get", "rc", "condition-test"],
        "{.status.readyReplicas}",
        "2",
    );
    assert!(!pod_owners(&server, "name=condition-test")
        .iter()
        .any(|p| p.starts_with(&format!("{pod}="))));

    // Lifecycle: patch, status read/patch, delete collection.
    server.ok(&[
        "patch",
        "rc",
        "condition-test",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"rc":"patched"}},"spec":{"replicas":1}}"#,
    ]);
    wait_for(
        &server,
        &["get", "rc", "-l", "rc=patched"],
        "{.items[0].status.replicas}",
        "1",
    );
    server.ok(&[
        "patch",
        "rc",
        "condition-test",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"StatusPatched","status":"True"}]}}"#,
    ]);
    let cond = server.jsonpath(
        &["get", "rc", "condition-test"],
        "{.status.conditions[?(@.type==\"StatusPatched\")].status}",
    );
    assert_eq!(cond, "True");
    raw_delete_collection(
        &server,
        "/api/v1/namespaces/default/replicationcontrollers?labelSelector=e2e%3Drc-conformance",
    );
    wait_for(
        &server,
        &["get", "pods", "-l", "name=condition-test"],
        "{.items[*].metadata.name}",
        "",
    );

    // A Deployment shows its ReplicaSet's ReplicaFailure as its own.
    server.ok(&["create", "namespace", "quota2"]);
    server.ok_stdin(&["apply", "-n", "quota2", "-f", "-"], QUOTA);
    wait_for(
        &server,
        &["get", "quota", "-n", "quota2", "condition-test"],
        "{.status.hard.pods}/{.status.used.pods}",
        "2/0",
    );
    server.ok(&[
        "create",
        "deployment",
        "-n",
        "quota2",
        "over",
        "--image=busybox:1.36",
        "--replicas=3",
    ]);
    wait_for(
        &server,
        &["get", "deploy", "-n", "quota2", "over"],
        "{.status.conditions[?(@.type==\"ReplicaFailure\")].status}/{.status.conditions[?(@.type==\"ReplicaFailure\")].reason}/{.status.readyReplicas}",
        "True/FailedCreate/2",
    );
}

const WEBSERVER: &str = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webserver
  labels: {e2e: deploy-conformance}
spec:
  replicas: 4
  revisionHistoryLimit: 1
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector: {matchLabels: {app: webserver}}
  template:
    metadata: {labels: {app: webserver}}
    spec:
      containers: [{name: httpd, image: 'httpd:2.4.38'}]
";

fn progressing(server: &Server, name: &str) -> String {
    server.jsonpath(
        &["get", "deploy", name],
        "{.status.conditions[?(@.type==\"Progressing\")].reason}",
    )
}

/// Deployment RollingUpdate and Rollover (old pods deleted, new ones
/// made), the Progressing reasons NewReplicaSetCreated, ReplicaSetUpdated,
/// FoundNewReplicaSet and NewReplicaSetAvailable, Available
/// MinimumReplicasAvailable, the revision and replicas annotations,
/// RevisionHistoryLimit (adopting an orphan ReplicaSet and deleting it
/// as history).
#[test]
fn deployment_rolling_update_conditions_annotations_history() {
    let (server, _agent) = simulated_cluster("dp", 2, WAIT);
    // An orphan ReplicaSet the Deployment's selector matches is adopted,
    // then cleaned away as history past the limit.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: test-cleanup-controller\n  labels: {app: webserver}\nspec:\n  replicas: 1\n  \
         selector: {matchLabels: {app: webserver}}\n  template:\n    metadata: {labels: {app: webserver}}\n    \
         spec:\n      containers: [{name: httpd, image: 'httpd:2.4.37'}]\n",
    );
    wait_for(
        &server,
        &["get", "rs", "test-cleanup-controller"],
        "{.status.readyReplicas}",
        "1",
    );
    let rv = list_rv(&server);
    server.ok_stdin(&["apply", "-f", "-"], WEBSERVER);
    server.ok(&["rollout", "status", "deploy/webserver", "--timeout=90s"]);
    wait_for(
        &server,
        &["get", "deploy", "webserver"],
        "{.status.conditions[?(@.type==\"Available\")].status}/{.status.conditions[?(@.type==\"Available\")].reason}",
        "True/MinimumReplicasAvailable",
    );
    assert_eq!(progressing(&server, "webserver"), "NewReplicaSetAvailable");
    wait_history(
        &server,
        "webserver",
        &rv,
        &["NewReplicaSetCreated", "NewReplicaSetAvailable"],
    );
    wait_for(
        &server,
        &["get", "rs", "test-cleanup-controller"],
        "{.metadata.ownerReferences[0].name}",
        "webserver",
    );

    // The new set: pod-template-hash in its name, labels and selector,
    // and the bookkeeping annotations.
    let rs_name = server.jsonpath(
        &["get", "rs", "-l", "app=webserver"],
        "{.items[?(@.spec.replicas==4)].metadata.name}",
    );
    let hash = rs_name.strip_prefix("webserver-").unwrap_or_default();
    assert!(
        (9..=10).contains(&hash.len())
            && hash
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{rs_name}"
    );
    let labels = server.jsonpath(
        &["get", "rs", &rs_name],
        "{.metadata.labels.pod-template-hash}/{.spec.selector.matchLabels.pod-template-hash}",
    );
    assert_eq!(labels, format!("{hash}/{hash}"));
    let annotations = server.jsonpath(&["get", "rs", &rs_name], "{.metadata.annotations}");
    let annotations: serde_json::Value = serde_json::from_str(&annotations).unwrap();
    // The adopted set has no revision: this is the first.
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "1");
    assert_eq!(
        annotations["deployment.kubernetes.io/desired-replicas"],
        "4"
    );
    assert_eq!(annotations["deployment.kubernetes.io/max-replicas"], "5");
    let dep_rev = server.jsonpath(
        &["get", "deploy", "webserver"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    );
    assert_eq!(dep_rev, "1");

    // Rolling update: every old pod replaced by a new one, never fewer
    // than 4 available (maxUnavailable 0).
    let old_pods = pod_owners(&server, "app=webserver");
    let rv = list_rv(&server);
    server.ok(&["set", "image", "deploy/webserver", "httpd=httpd:2.4.39"]);
    server.ok(&["rollout", "status", "deploy/webserver", "--timeout=90s"]);
    wait_history(
        &server,
        "webserver",
        &rv,
        &[
            "NewReplicaSetCreated",
            "ReplicaSetUpdated",
            "NewReplicaSetAvailable",
        ],
    );
    let mut new_pods = Vec::new();
    assert!(
        eventually(WAIT, || {
            new_pods = pod_owners(&server, "app=webserver");
            new_pods.len() == 4 && new_pods.iter().all(|p| !old_pods.contains(p))
        }),
        "{old_pods:?} -> {new_pods:?}"
    );
    // Old pods may take their grace period to go.
    wait_for(
        &server,
        &["get", "pods", "-l", "app=webserver"],
        "{.items[*].spec.containers[0].image}",
        "httpd:2.4.39 httpd:2.4.39 httpd:2.4.39 httpd:2.4.39",
    );

    // revisionHistoryLimit 1: of three sets (adopted, first, second) only
    // the current one and one old one stay.
    let mut names = String::new();
    assert!(
        eventually(WAIT, || {
            names = server.jsonpath(
                &["get", "rs", "-l", "app=webserver"],
                "{.items[*].metadata.name}",
            );
            names.split_whitespace().count() == 2 && !names.contains("test-cleanup-controller")
        }),
        "{names}"
    );
    let old_rev = server.jsonpath(
        &["get", "rs", &rs_name],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}/{.spec.replicas}",
    );
    assert_eq!(old_rev, "1/0");

    // A lost Progressing condition is found again (FoundNewReplicaSet),
    // then completes.
    let rv = list_rv(&server);
    server.ok(&[
        "patch",
        "deploy",
        "webserver",
        "--subresource=status",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/status/conditions"}]"#,
    ]);
    wait_history(
        &server,
        "webserver",
        &rv,
        &["FoundNewReplicaSet", "NewReplicaSetAvailable"],
    );
}

/// Deployment Proportional Scaling (upstream numbers: 10 replicas,
/// maxSurge 3, maxUnavailable 2, a rollout that cannot progress, then a
/// scale to 30 spreads 33 pods as 20 old + 13 new); Deployment, completes
/// the scaling of a Deployment subresource.
#[test]
fn deployment_proportional_scaling_and_scale_subresource() {
    let (server, _agent) = simulated_cluster("ps", 2, WAIT);
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: webserver\nspec:\n  replicas: 10\n  \
         strategy:\n    rollingUpdate: {maxSurge: 3, maxUnavailable: 2}\n  \
         selector: {matchLabels: {app: ps}}\n  template:\n    metadata: {labels: {app: ps}}\n    \
         spec:\n      containers: [{name: httpd, image: 'httpd:2.4.38'}]\n",
    );
    server.ok(&["rollout", "status", "deploy/webserver", "--timeout=90s"]);
    let first = server.jsonpath(&["get", "rs", "-l", "app=ps"], "{.items[0].metadata.name}");
    // The new template's pods never become ready.
    server.ok(&[
        "patch",
        "deploy",
        "webserver",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","image":"webserver:404","readinessProbe":{"initialDelaySeconds":100000,"exec":{"command":["true"]}}}]}}}}"#,
    ]);
    let sizes = |server: &Server| {
        server.jsonpath(
            &["get", "rs", "-l", "app=ps"],
            &format!(
                "{{.items[?(@.metadata.name==\"{first}\")].spec.replicas}}/{{.items[?(@.metadata.name!=\"{first}\")].spec.replicas}}"
            ),
        )
    };
    let mut last = String::new();
    assert!(
        eventually(WAIT, || {
            last = sizes(&server);
            last == "8/5"
        }),
        "stalled rollout: want 8/5, have {last}"
    );
    server.ok(&["scale", "deploy/webserver", "--replicas=30"]);
    assert!(
        eventually(WAIT, || {
            last = sizes(&server);
            last == "20/13"
        }),
        "proportional scale: want 20/13, have {last}"
    );

    // The scale subresource reads the Deployment's size and resizes it.
    let scale = server.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/webserver/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 30);
    assert_eq!(scale["status"]["selector"], "app=ps");
    server.ok(&["rollout", "undo", "deploy/webserver"]);
    server.ok(&[
        "patch",
        "deploy",
        "webserver",
        "--subresource=scale",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    wait_for(
        &server,
        &["get", "deploy", "webserver"],
        "{.spec.replicas}/{.status.replicas}/{.status.availableReplicas}/{.status.updatedReplicas}",
        "3/3/3/3",
    );
}

/// Deployment, completes the lifecycle of a Deployment (create, list by
/// label across namespaces, patch, status read/update, delete
/// collection); Deployment, status sub-resource.
#[test]
fn deployment_lifecycle_and_status_subresource() {
    let (server, _agent) = simulated_cluster("dl", 1, WAIT);
    server.ok(&["create", "namespace", "lifecycle"]);
    server.ok_stdin(
        &["apply", "-n", "lifecycle", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: test-deployment\n  labels: {test-deployment-static: 'true'}\nspec:\n  \
         replicas: 1\n  selector: {matchLabels: {test-deployment-static: 'true'}}\n  template:\n    \
         metadata: {labels: {test-deployment-static: 'true'}}\n    spec:\n      containers: [{name: c, image: 'httpd:2.4.38'}]\n",
    );
    wait_for(
        &server,
        &["get", "deploy", "-A", "-l", "test-deployment-static=true"],
        "{.items[*].metadata.name}/{.items[*].status.readyReplicas}",
        "test-deployment/1",
    );
    server.ok(&[
        "patch",
        "deploy",
        "-n",
        "lifecycle",
        "test-deployment",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"test-deployment":"patched"}},"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"c","image":"httpd:2.4.39"}]}}}}"#,
    ]);
    server.ok(&[
        "rollout",
        "status",
        "-n",
        "lifecycle",
        "deploy/test-deployment",
        "--timeout=90s",
    ]);
    wait_for(
        &server,
        &[
            "get",
            "deploy",
            "-n",
            "lifecycle",
            "-l",
            "test-deployment=patched",
        ],
        "{.items[0].status.availableReplicas}",
        "2",
    );
    let status = server.ok(&[
        "get",
        "deploy",
        "-n",
        "lifecycle",
        "test-deployment",
        "--subresource=status",
        "-o",
        "json",
    ]);
    let mut status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["status"]["replicas"], 2);
    // An update (PUT) of the status keeps what it wrote; a patch follows.
    status["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "StatusReplaced", "status": "True", "reason": "E2E"}));
    server.ok_stdin(
        &["replace", "--subresource=status", "-f", "-"],
        &status.to_string(),
    );
    wait_for(
        &server,
        &["get", "deploy", "-n", "lifecycle", "test-deployment"],
        "{.status.conditions[?(@.type==\"StatusReplaced\")].reason}",
        "E2E",
    );
    server.ok(&[
        "patch",
        "deploy",
        "-n",
        "lifecycle",
        "test-deployment",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"StatusUpdate","status":"True","reason":"E2E","message":"Set from e2e test"}]}}"#,
    ]);
    wait_for(
        &server,
        &["get", "deploy", "-n", "lifecycle", "test-deployment"],
        "{.status.conditions[?(@.type==\"StatusUpdate\")].reason}",
        "E2E",
    );
    raw_delete_collection(
        &server,
        "/apis/apps/v1/namespaces/lifecycle/deployments?labelSelector=test-deployment-static%3Dtrue",
    );
    wait_for(
        &server,
        &["get", "deploy,rs,pods", "-n", "lifecycle"],
        "{.items[*].metadata.name}",
        "",
    );
}

const DAEMONSET: &str = "
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: daemon-set
  labels: {daemonset-name: daemon-set}
spec:
  selector: {matchLabels: {daemonset-name: daemon-set}}
  template:
    metadata: {labels: {daemonset-name: daemon-set}}
    spec:
      containers: [{name: app, image: 'httpd:2.4.38'}]
";

fn ds_pods(server: &Server) -> Vec<String> {
    let out = server.jsonpath(
        &["get", "pods", "-l", "daemonset-name=daemon-set"],
        "{range .items[*]}{.metadata.uid}:{.spec.containers[0].image}:{.metadata.deletionTimestamp} {end}",
    );
    let mut v: Vec<String> = out
        .split_whitespace()
        .filter(|w| w.ends_with(':'))
        .map(|w| w.trim_end_matches(':').to_string())
        .collect();
    v.sort();
    v
}

/// DaemonSet-Rollback (no unnecessary restarts), DaemonSet status fields
/// with updatedNumberScheduled, `kubectl rollout status` for DaemonSets,
/// DaemonSet status sub-resource, DaemonSet list and delete collection,
/// ControllerRevision resource lifecycle.
#[test]
fn daemonset_rollback_status_revisions_and_lifecycle() {
    let (server, _agent) = simulated_cluster("dsc", 3, WAIT);
    server.ok_stdin(&["apply", "-f", "-"], DAEMONSET);
    let out = server.ok(&["rollout", "status", "ds/daemon-set", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let generation = server.jsonpath(&["get", "ds", "daemon-set"], "{.metadata.generation}");
    wait_for(
        &server,
        &["get", "ds", "daemon-set"],
        "{.status.desiredNumberScheduled}/{.status.currentNumberScheduled}/{.status.numberReady}/{.status.numberAvailable}/{.status.updatedNumberScheduled}/{.status.numberMisscheduled}/{.status.observedGeneration}",
        &format!("3/3/3/3/3/0/{generation}"),
    );
    // A deleted daemon pod is revived (DaemonSet-Creation).
    let victim = server.jsonpath(
        &["get", "pods", "-l", "daemonset-name=daemon-set"],
        "{.items[0].metadata.name}",
    );
    server.ok(&["delete", "pod", &victim, "--wait=false"]);
    let mut now = Vec::new();
    assert!(
        eventually(WAIT, || {
            let names = server.jsonpath(
                &["get", "pods", "-l", "daemonset-name=daemon-set"],
                "{.items[*].metadata.name}",
            );
            now = ds_pods(&server);
            now.len() == 3 && !names.contains(&victim)
        }),
        "{victim} not replaced: {now:?}"
    );
    server.ok(&["rollout", "status", "ds/daemon-set", "--timeout=90s"]);
    let before = ds_pods(&server);
    assert_eq!(before.len(), 3);

    // An update whose pods never become ready stalls after one pod
    // (maxUnavailable 1): the rollout reports it and updatedNumberScheduled
    // says so.
    server.ok(&[
        "patch",
        "ds",
        "daemon-set",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"foo:non-existent","readinessProbe":{"initialDelaySeconds":100000,"exec":{"command":["true"]}}}]}}}}"#,
    ]);
    wait_for(
        &server,
        &["get", "ds", "daemon-set"],
        "{.status.updatedNumberScheduled}/{.status.numberUnavailable}",
        "1/1",
    );
    let out = server.kubectl(&["rollout", "status", "ds/daemon-set", "--timeout=3s"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        printed.contains("1 out of 3 new pods have been updated"),
        "{printed}"
    );
    let stalled = ds_pods(&server);
    let kept: Vec<&String> = stalled.iter().filter(|p| before.contains(p)).collect();
    assert_eq!(kept.len(), 2, "{before:?} -> {stalled:?}");

    // Rolled back, only the new pod is replaced: the two old ones keep
    // running untouched.
    server.ok(&["rollout", "undo", "ds/daemon-set"]);
    server.ok(&["rollout", "status", "ds/daemon-set", "--timeout=90s"]);
    let mut after = Vec::new();
    assert!(
        eventually(WAIT, || {
            after = ds_pods(&server);
            after.len() == 3 && after.iter().all(|p| p.ends_with(":httpd:2.4.38"))
        }),
        "{after:?}"
    );
    for p in kept {
        assert!(
            after.contains(p),
            "{p} was restarted: {before:?} -> {after:?}"
        );
    }

    // ControllerRevisions: one per template, owned by the DaemonSet;
    // patched, replaced, a new one created and a collection deleted.
    let revs = server.jsonpath(
        &[
            "get",
            "controllerrevisions",
            "-l",
            "daemonset-name=daemon-set",
        ],
        "{range .items[*]}{.metadata.ownerReferences[0].name}={.revision} {end}",
    );
    let mut revs: Vec<&str> = revs.split_whitespace().collect();
    revs.sort();
    assert_eq!(revs, ["daemon-set=2", "daemon-set=3"]);
    let cr_name = server.jsonpath(
        &[
            "get",
            "controllerrevisions",
            "-l",
            "daemonset-name=daemon-set",
        ],
        "{.items[?(@.revision==3)].metadata.name}",
    );
    server.ok(&[
        "patch",
        "controllerrevision",
        &cr_name,
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"e2e":"patched"}}}"#,
    ]);
    let mut cr: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "controllerrevision", &cr_name, "-o", "json"]))
            .unwrap();
    cr["metadata"]["labels"]["e2e"] = "updated".into();
    server.ok_stdin(&["replace", "-f", "-"], &cr.to_string());
    let labels = server.jsonpath(
        &["get", "controllerrevision", &cr_name],
        "{.metadata.labels.e2e}",
    );
    assert_eq!(labels, "updated");
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: e2e-extra\n  labels: {e2e: extra}\ndata: {}\nrevision: 9\n",
    );
    raw_delete_collection(
        &server,
        "/apis/apps/v1/namespaces/default/controllerrevisions?labelSelector=e2e%3Dextra",
    );
    wait_for(
        &server,
        &["get", "controllerrevisions", "-l", "e2e=extra"],
        "{.items[*].metadata.name}",
        "",
    );

    // The status subresource: read, and a written condition kept.
    let st = server.ok(&[
        "get",
        "ds",
        "daemon-set",
        "--subresource=status",
        "-o",
        "jsonpath={.status.numberReady}",
    ]);
    assert_eq!(st, "3");
    server.ok(&[
        "patch",
        "ds",
        "daemon-set",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"StatusUpdate","status":"True","reason":"E2E","message":"Set from e2e test"}]}}"#,
    ]);
    wait_for(
        &server,
        &["get", "ds", "daemon-set"],
        "{.status.conditions[?(@.type==\"StatusUpdate\")].reason}",
        "E2E",
    );

    // Delete the collection: DaemonSets, pods and revisions go.
    raw_delete_collection(
        &server,
        "/apis/apps/v1/namespaces/default/daemonsets?labelSelector=daemonset-name%3Ddaemon-set",
    );
    wait_for(
        &server,
        &[
            "get",
            "ds,pods,controllerrevisions",
            "-l",
            "daemonset-name=daemon-set",
        ],
        "{.items[*].metadata.name}",
        "",
    );
}

/// Each pod event since resourceVersion `rv` as (type, name, owner), in
/// order; a change to a terminal phase is typed FINISHED.
fn pod_history(server: &Server, rv: &str, selector: &str) -> Vec<(String, String, String)> {
    let out = server.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}\
             &labelSelector={selector}&timeoutSeconds=1"
        ),
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let ev: serde_json::Value = serde_json::from_str(l).unwrap();
            let meta = &ev["object"]["metadata"];
            // A pod in a terminal phase runs nothing any more: as gone.
            let phase = ev["object"]["status"]["phase"].as_str().unwrap_or_default();
            let kind = match ev["type"].as_str().unwrap_or_default() {
                "MODIFIED" if matches!(phase, "Succeeded" | "Failed") => "FINISHED",
                other => other,
            };
            (
                kind.to_string(),
                meta["name"].as_str().unwrap_or_default().to_string(),
                meta["ownerReferences"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Deployment Recreate (no new pod before every old one is gone);
/// Deployment RevisionHistoryLimit (limit 0: an adopted old set and every
/// superseded one deleted once the rollout is done).
#[test]
fn deployment_recreate_never_overlaps_and_history_limit_zero() {
    let (server, _agent) = simulated_cluster("rc0", 2, WAIT);
    let template = |image: &str| {
        format!(
            "    metadata: {{labels: {{name: cleanup-pod}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      \
             containers: [{{name: c, image: '{image}'}}]\n"
        )
    };
    server.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: test-cleanup-controller\n  labels: {{name: cleanup-pod}}\nspec:\n  \
             replicas: 1\n  selector: {{matchLabels: {{name: cleanup-pod}}}}\n  template:\n{}",
            template("httpd:2.4.37")
        ),
    );
    wait_for(
        &server,
        &["get", "rs", "test-cleanup-controller"],
        "{.status.readyReplicas}",
        "1",
    );
    let list = server.ok(&["get", "--raw", "/api/v1/namespaces/default/pods"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let deployment = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: test-cleanup-deployment\nspec:\n  replicas: 2\n  \
             revisionHistoryLimit: 0\n  strategy: {{type: Recreate}}\n  selector: {{matchLabels: {{name: cleanup-pod}}}}\n  \
             template:\n{}",
            template(image)
        )
    };
    server.ok_stdin(&["apply", "-f", "-"], &deployment("httpd:2.4.38"));
    server.ok(&[
        "rollout",
        "status",
        "deploy/test-cleanup-deployment",
        "--timeout=90s",
    ]);
    server.ok_stdin(&["apply", "-f", "-"], &deployment("httpd:2.4.39"));
    server.ok(&[
        "rollout",
        "status",
        "deploy/test-cleanup-deployment",
        "--timeout=90s",
    ]);
    // History 0: only the current set is left.
    wait_for(
        &server,
        &["get", "rs", "-l", "name=cleanup-pod"],
        "{.items[*].spec.template.spec.containers[0].image}",
        "httpd:2.4.39",
    );
    wait_for(
        &server,
        &["get", "pods", "-l", "name=cleanup-pod"],
        "{.items[*].spec.containers[0].image}",
        "httpd:2.4.39 httpd:2.4.39",
    );

    // Replay the pods' history: a pod of a new set appears only when no
    // pod of another set is left running (upstream `oldPodsRunning`: a
    // pod in a terminal phase no longer counts, even before it is gone).
    let events = pod_history(&server, &rv, "name%3Dcleanup-pod");
    let mut live: std::collections::BTreeMap<String, String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["labels"]["name"] == "cleanup-pod")
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let mut owners_seen = std::collections::BTreeSet::new();
    for (kind, name, owner) in &events {
        match kind.as_str() {
            "ADDED" if !live.contains_key(name) => {
                let others: Vec<_> = live.iter().filter(|(_, o)| *o != owner).collect();
                assert!(
                    others.is_empty(),
                    "{name} of {owner} created while {others:?} lived\n{events:?}"
                );
                live.insert(name.clone(), owner.clone());
                owners_seen.insert(owner.clone());
            }
            "DELETED" | "FINISHED" => {
                live.remove(name);
            }
            _ => {}
        }
    }
    assert_eq!(owners_seen.len(), 2, "two rollouts: {events:?}");

    // Upstream's own check: no Deployment status ever shows new pods
    // beside old ones.
    let out = server.ok(&[
        "get",
        "--raw",
        &format!(
            "/apis/apps/v1/namespaces/default/deployments?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ),
    ]);
    let mut statuses = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        let st = &ev["object"]["status"];
        let (replicas, updated) = (
            st["replicas"].as_i64().unwrap_or(0),
            st["updatedReplicas"].as_i64().unwrap_or(0),
        );
        assert!(
            updated == 0 || replicas == updated,
            "new pods alongside old ones: {st}"
        );
        statuses += 1;
    }
    assert!(statuses > 2, "{out}");
}

/// Deployment Rollover: a rollout stuck on pods that never become ready
/// is rolled over by the next template; the stuck set and the adopted
/// original are both scaled to zero once the newest set's pod has been
/// ready for minReadySeconds.
#[test]
fn deployment_rollover_scales_stuck_and_adopted_sets_down() {
    let (server, _agent) = simulated_cluster("ro", 2, WAIT);
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: test-rollover-controller\n  labels: {name: rollover-pod}\nspec:\n  \
         replicas: 1\n  selector: {matchLabels: {name: rollover-pod}}\n  template:\n    metadata: {labels: {name: rollover-pod}}\n    \
         spec:\n      containers: [{name: httpd, image: 'httpd:2.4.38'}]\n",
    );
    wait_for(
        &server,
        &["get", "rs", "test-rollover-controller"],
        "{.status.availableReplicas}",
        "1",
    );
    let deployment = |image: &str, probe: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: test-rollover-deployment\nspec:\n  replicas: 1\n  \
             minReadySeconds: 5\n  strategy:\n    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}\n  \
             selector: {{matchLabels: {{name: rollover-pod}}}}\n  template:\n    metadata: {{labels: {{name: rollover-pod}}}}\n    \
             spec:\n      containers: [{{name: c, image: '{image}'{probe}}}]\n"
        )
    };
    let never_ready = ", readinessProbe: {initialDelaySeconds: 100000, exec: {command: ['true']}}";
    server.ok_stdin(
        &["apply", "-f", "-"],
        &deployment(
            "gcr.io/google_samples/gb-redisslave:nonexistent",
            never_ready,
        ),
    );
    // The adopted set keeps its pod: the new one never becomes available.
    let stuck = {
        let mut name = String::new();
        assert!(eventually(WAIT, || {
            name = server.jsonpath(
                &["get", "rs", "-l", "name=rollover-pod"],
                "{.items[?(@.spec.template.spec.containers[0].name==\"c\")].metadata.name}",
            );
            !name.is_empty()
        }));
        name
    };
    wait_for(
        &server,
        &["get", "rs", "-l", "name=rollover-pod"],
        "{.items[*].status.replicas}",
        "1 1",
    );
    wait_for(
        &server,
        &["get", "rs", "test-rollover-controller"],
        "{.metadata.ownerReferences[0].name}/{.spec.replicas}",
        "test-rollover-deployment/1",
    );

    server.ok_stdin(&["apply", "-f", "-"], &deployment("httpd:2.4.39", ""));
    server.ok(&[
        "rollout",
        "status",
        "deploy/test-rollover-deployment",
        "--timeout=90s",
    ]);
    wait_for(
        &server,
        &["get", "rs", "test-rollover-controller"],
        "{.spec.replicas}/{.status.replicas}",
        "0/0",
    );
    wait_for(
        &server,
        &["get", "rs", &stuck],
        "{.spec.replicas}/{.status.replicas}",
        "0/0",
    );
    wait_for(
        &server,
        &["get", "deploy", "test-rollover-deployment"],
        "{.status.replicas}/{.status.updatedReplicas}/{.status.availableReplicas}",
        "1/1/1",
    );
    let revision = server.jsonpath(
        &["get", "deploy", "test-rollover-deployment"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    );
    assert_eq!(revision, "2");
}
