//! DaemonSets, StatefulSets, Jobs and CronJobs on simulated nodes, driven
//! by the real kubectl against the real server: the scheduler binds the
//! controllers' pods and `rkube agent --simulate` runs them.

mod support;

use std::time::Duration;

use support::agent::simulated_cluster;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(60);

/// Wait until `path` of `args` reads `want`; fail with what was seen and
/// the cluster's state.
fn wait_for(server: &Server, args: &[&str], path: &str, want: &str) {
    server.wait_jsonpath(WAIT, args, path, want, || {
        server.ok(&["get", "all", "-o", "wide"])
    });
}

const DAEMONSET: &str = "
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      nodeSelector: {disk: ssd}
      containers:
      - name: main
        image: busybox:1.36
        command: [sleep, '3600']
";

#[test]
fn daemonset_puts_one_pod_on_each_matching_node_and_rolls_out() {
    let (server, _agent) = simulated_cluster("ds", 3, WAIT);
    server.ok(&["label", "node", "ds-0", "ds-1", "disk=ssd"]);
    server.ok_stdin(&["apply", "-f", "-"], DAEMONSET);
    wait_for(
        &server,
        &["get", "ds", "agent"],
        "{.status.numberReady}",
        "2",
    );
    let placed = server.jsonpath(
        &["get", "pods", "-l", "app=agent"],
        "{range .items[*]}{.spec.nodeName}{\" \"}{end}",
    );
    let mut nodes: Vec<&str> = placed.split_whitespace().collect();
    nodes.sort();
    assert_eq!(nodes, ["ds-0", "ds-1"]);
    // Pinned by node affinity, not by nodeName: the scheduler bound them.
    let pinned = server.jsonpath(
        &["get", "pods", "-l", "app=agent"],
        "{.items[0].spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key}",
    );
    assert_eq!(pinned, "metadata.name");
    let tolerations = server.jsonpath(
        &["get", "pods", "-l", "app=agent"],
        "{.items[0].spec.tolerations[*].key}",
    );
    assert!(
        tolerations.contains("node.kubernetes.io/unschedulable"),
        "{tolerations}"
    );

    // A newly matching node gets its pod.
    server.ok(&["label", "node", "ds-2", "disk=ssd"]);
    wait_for(
        &server,
        &["get", "ds", "agent"],
        "{.status.numberAvailable}",
        "3",
    );
    let table = server.ok(&["get", "ds", "agent"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..6], ["agent", "3", "3", "3", "3", "3"], "{table}");

    // A failed daemon pod is replaced.
    let victim = server.jsonpath(
        &["get", "pods", "-l", "app=agent"],
        "{.items[0].metadata.name}",
    );
    server.ok(&[
        "patch",
        "pod",
        &victim,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ]);
    let replaced = eventually(WAIT, || {
        let names = server.jsonpath(
            &["get", "pods", "-l", "app=agent"],
            "{.items[*].metadata.name}",
        );
        !names.contains(&victim) && names.split_whitespace().count() == 3
    });
    assert!(replaced, "{}", server.ok(&["get", "pods", "-o", "wide"]));
    wait_for(
        &server,
        &["get", "ds", "agent"],
        "{.status.numberAvailable}",
        "3",
    );
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=agent",
    ]);
    assert!(events.contains("FailedDaemonPod"), "{events}");

    // A template change rolls out, with history and undo.
    server.ok(&["set", "image", "ds/agent", "main=busybox:1.37"]);
    let status = server.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    // Old pods may take a moment to stop after the rollout counts as done.
    wait_for(
        &server,
        &["get", "pods", "-l", "app=agent"],
        "{.items[*].spec.containers[0].image}",
        "busybox:1.37 busybox:1.37 busybox:1.37",
    );
    let history = server.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    server.ok(&["rollout", "undo", "ds/agent"]);
    wait_for(
        &server,
        &["get", "ds", "agent"],
        "{.spec.template.spec.containers[0].image}",
        "busybox:1.36",
    );
    server.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    let revs = server.jsonpath(&["get", "controllerrevisions"], "{.items[*].revision}");
    let mut revs: Vec<&str> = revs.split_whitespace().collect();
    revs.sort();
    assert_eq!(
        revs,
        ["2", "3"],
        "undo makes the old revision current again"
    );

    // Unlabelled nodes lose their pod.
    server.ok(&["label", "node", "ds-2", "disk-"]);
    wait_for(
        &server,
        &["get", "ds", "agent"],
        "{.status.desiredNumberScheduled}",
        "2",
    );
    wait_for(
        &server,
        &["get", "ds", "agent"],
        "{.status.currentNumberScheduled}",
        "2",
    );
}

// The claims use the server's default class, local-path (as k3s's): it
// binds on first use, so the scheduler picks the node, the provisioner
// makes a volume there (simulated nodes keep nothing on disk), and only
// then is the pod bound, as upstream's VolumeBinding PreBind waits.
const STATEFULSET: &str = "
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        command: [sleep, '3600']
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
";

#[test]
fn statefulset_creates_web_0_1_2_in_order_and_scales_down_from_the_top() {
    let (server, _agent) = simulated_cluster("sts", 2, WAIT);
    server.ok_stdin(&["apply", "-f", "-"], STATEFULSET);
    wait_for(
        &server,
        &["get", "sts", "web"],
        "{.status.readyReplicas}",
        "3",
    );
    // Each pod was created only once the one before it was Ready.
    let ready_at = |p: &str| {
        server.jsonpath(
            &["get", "pod", p],
            "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
        )
    };
    let created_at = |p: &str| server.jsonpath(&["get", "pod", p], "{.metadata.creationTimestamp}");
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let (r, c) = (ready_at(before), created_at(after));
        assert!(
            !r.is_empty() && r <= c,
            "{after} created at {c}, {before} ready at {r}"
        );
    }
    let pod = |p: &str, path: &str| server.jsonpath(&["get", "pod", p], path);
    assert_eq!(
        pod("web-1", "{.spec.hostname}.{.spec.subdomain}"),
        "web-1.nginx"
    );
    assert_eq!(
        pod("web-1", "{.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}"),
        "web-1 1"
    );
    assert_eq!(
        pod(
            "web-2",
            "{.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}"
        ),
        "www-web-2"
    );
    let claims = server.jsonpath(&["get", "pvc"], "{.items[*].metadata.name}");
    assert_eq!(claims, "www-web-0 www-web-1 www-web-2");

    // A failed pod is recreated under the same name.
    let uid = pod("web-1", "{.metadata.uid}");
    server.ok(&[
        "patch",
        "pod",
        "web-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ]);
    let recreated = eventually(WAIT, || {
        let now = pod("web-1", "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    assert!(recreated, "{}", server.ok(&["get", "pods", "-o", "wide"]));
    wait_for(
        &server,
        &["get", "sts", "web"],
        "{.status.readyReplicas}",
        "3",
    );
    let status = server.ok(&["rollout", "status", "sts/web", "--timeout=30s"]);
    assert!(
        status.contains("roll out complete") || status.contains("rolling update complete"),
        "{status}"
    );

    // A rolling update replaces from the highest ordinal down.
    server.ok(&["set", "image", "sts/web", "main=busybox:1.37"]);
    server.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let images = server.jsonpath(
        &["get", "pods", "-l", "app=web"],
        "{.items[*].spec.containers[0].image}",
    );
    assert_eq!(images, "busybox:1.37 busybox:1.37 busybox:1.37");
    wait_for(
        &server,
        &["get", "sts", "web"],
        "{.status.currentRevision}",
        &server.jsonpath(&["get", "sts", "web"], "{.status.updateRevision}"),
    );

    let history = server.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    server.ok(&["rollout", "undo", "sts/web"]);
    server.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    wait_for(
        &server,
        &["get", "pods", "-l", "app=web"],
        "{.items[*].spec.containers[0].image}",
        "busybox:1.36 busybox:1.36 busybox:1.36",
    );

    // Claims of a set whose policy says so go with it.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &STATEFULSET
            .replace("name: web", "name: db")
            .replace("{app: web}", "{app: db}")
            .replace(
                "replicas: 3",
                "replicas: 1\n  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}",
            ),
    );
    wait_for(
        &server,
        &["get", "sts", "db"],
        "{.status.readyReplicas}",
        "1",
    );
    assert_eq!(
        server.jsonpath(
            &["get", "pvc", "www-db-0"],
            "{.metadata.ownerReferences[0].kind}"
        ),
        "StatefulSet"
    );
    server.ok(&["delete", "sts", "db"]);
    wait_for(
        &server,
        &["get", "pvc", "-l", "app=db"],
        "{.items[*].metadata.name}",
        "",
    );

    // Scale down: web-2 goes, then web-1; claims stay (Retain).
    server.ok(&["scale", "sts/web", "--replicas=1"]);
    wait_for(
        &server,
        &["get", "pods", "-l", "app=web"],
        "{.items[*].metadata.name}",
        "web-0",
    );
    assert_eq!(
        server.jsonpath(&["get", "pvc"], "{.items[*].metadata.name}"),
        "www-web-0 www-web-1 www-web-2"
    );
}

const JOB: &str = "
apiVersion: batch/v1
kind: Job
metadata:
  name: NAME
spec:
  completions: 4
  parallelism: 2
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: [sh, -c, 'sleep 1; exit CODE']
";

#[test]
fn jobs_complete_with_parallelism_and_fail_past_their_backoff_limit() {
    let (server, _agent) = simulated_cluster("job", 2, WAIT);
    let job = |name: &str, code: &str| JOB.replace("NAME", name).replace("CODE", code);
    server.ok_stdin(&["apply", "-f", "-"], &job("works", "0"));
    server.ok_stdin(&["apply", "-f", "-"], &job("breaks", "1"));
    server.ok_stdin(
        &["apply", "-f", "-"],
        &job("indexed", "0").replace("backoffLimit: 1", "completionMode: Indexed"),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &job("policy", "42").replace(
            "backoffLimit: 1",
            "backoffLimit: 5\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {operator: In, values: [42]}",
        ),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &JOB.replace("NAME", "slow")
            .replace("sleep 1; exit CODE", "sleep 30")
            .replace("backoffLimit: 1", "activeDeadlineSeconds: 2"),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &job("paused", "0").replace("backoffLimit: 1", "suspend: true"),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &JOB.replace("NAME", "long")
            .replace("sleep 1; exit CODE", "sleep 3600")
            .replace("parallelism: 2", "parallelism: 1"),
    );
    // Never more than parallelism pods at once.
    let mut most = 0;
    let done = eventually(WAIT, || {
        let active = server.jsonpath(&["get", "job", "works"], "{.status.active}");
        most = most.max(active.parse().unwrap_or(0));
        server.jsonpath(&["get", "job", "works"], "{.status.succeeded}") == "4"
    });
    assert!(done, "{}", server.ok(&["get", "jobs,pods", "-o", "wide"]));
    assert!(most <= 2, "{most} pods ran at once");
    let out = server.ok(&[
        "wait",
        "--for=condition=complete",
        "job/works",
        "--timeout=30s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    let conds = server.jsonpath(&["get", "job", "works"], "{.status.conditions[*].type}");
    assert_eq!(conds, "SuccessCriteriaMet Complete");
    assert!(!server
        .jsonpath(&["get", "job", "works"], "{.status.completionTime}")
        .is_empty());
    // Counted pods lose the tracking finalizer.
    let finalizers = server.jsonpath(
        &["get", "pods", "-l", "job-name=works"],
        "{.items[*].metadata.finalizers}",
    );
    assert_eq!(finalizers, "");
    let table = server.ok(&["get", "job", "works"]);
    assert!(table.contains("4/4"), "{table}");

    wait_for(
        &server,
        &["get", "job", "indexed"],
        "{.status.completedIndexes}",
        "0-3",
    );
    let hostnames = server.jsonpath(
        &["get", "pods", "-l", "job-name=indexed"],
        "{.items[*].spec.hostname}",
    );
    for i in 0..4 {
        assert!(hostnames.contains(&format!("indexed-{i}")), "{hostnames}");
    }

    wait_for(
        &server,
        &["get", "job", "policy"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
        "PodFailurePolicy",
    );

    // Two failures exceed backoffLimit 1 (the retry waits out the 10 s
    // backoff first).
    wait_for(
        &server,
        &["get", "job", "breaks"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
        "BackoffLimitExceeded",
    );
    assert_eq!(
        server.jsonpath(&["get", "job", "breaks"], "{.status.failed}"),
        "2"
    );
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=breaks",
    ]);
    assert!(events.contains("BackoffLimitExceeded"), "{events}");

    // activeDeadlineSeconds ends a Job whose pods run too long; its pods
    // are stopped before the Job counts as Failed.
    wait_for(
        &server,
        &["get", "job", "slow"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
        "DeadlineExceeded",
    );
    assert_eq!(
        server.jsonpath(&["get", "job", "slow"], "{.status.active}"),
        "0"
    );

    // A suspended Job starts nothing until resumed.
    wait_for(
        &server,
        &["get", "job", "paused"],
        "{.status.conditions[?(@.type==\"Suspended\")].status}",
        "True",
    );
    assert_eq!(
        server.jsonpath(
            &["get", "pods", "-l", "job-name=paused"],
            "{.items[*].metadata.name}"
        ),
        ""
    );
    server.ok(&[
        "patch",
        "job",
        "paused",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    wait_for(
        &server,
        &["get", "job", "paused"],
        "{.status.succeeded}",
        "4",
    );
    assert_eq!(
        server.jsonpath(
            &["get", "job", "paused"],
            "{.status.conditions[?(@.type==\"Suspended\")].reason}"
        ),
        "JobResumed"
    );

    // An orphaned pod of a Job is adopted again.
    let long = server.jsonpath(
        &["get", "pods", "-l", "job-name=long"],
        "{.items[0].metadata.name}",
    );
    assert!(!long.is_empty());
    server.ok(&[
        "patch",
        "pod",
        &long,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
    ]);
    wait_for(
        &server,
        &["get", "pod", &long],
        "{.metadata.ownerReferences[0].name}",
        "long",
    );
    assert_eq!(
        server.jsonpath(&["get", "job", "long"], "{.status.active}"),
        "1"
    );

    // Deleting a Job takes its pods along; the tracking finalizer does
    // not keep them.
    server.ok(&["delete", "job", "works", "breaks"]);
    wait_for(
        &server,
        &["get", "pods", "-l", "job-name in (works,breaks)"],
        "{.items[*].metadata.name}",
        "",
    );
}

const CRONJOB: &str = "
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: '*/1 * * * *'
  timeZone: Etc/UTC
  # The hand-made Job is the CronJob's too (kubectl sets the controller
  # reference), so with a limit of 1 the controller may delete it as soon as
  # a scheduled Job succeeds after it, before the test has seen it succeed.
  successfulJobsHistoryLimit: 3
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox:1.36
            command: ['true']
";

#[test]
fn cronjob_fires_each_minute_and_create_job_from_it_works() {
    let (server, _agent) = simulated_cluster("cron", 1, WAIT);
    server.ok_stdin(&["apply", "-f", "-"], CRONJOB);
    // kubectl builds this Job from the template on the client side.
    server.ok(&["create", "job", "--from=cronjob/tick", "by-hand"]);
    wait_for(
        &server,
        &["get", "job", "by-hand"],
        "{.status.succeeded}",
        "1",
    );
    let mut name = String::new();
    let fired = eventually(Duration::from_secs(75), || {
        name = server
            .jsonpath(&["get", "jobs"], "{.items[*].metadata.name}")
            .split_whitespace()
            .find(|n| n.starts_with("tick-"))
            .unwrap_or_default()
            .to_string();
        !name.is_empty()
    });
    assert!(
        fired,
        "no job within 75s\n{}",
        server.ok(&["get", "cronjob,jobs", "-o", "wide"])
    );
    // Named after the scheduled minute since the epoch, which is also
    // the last schedule time.
    let minutes: i64 = name.trim_start_matches("tick-").parse().unwrap();
    let last = server.jsonpath(&["get", "cronjob", "tick"], "{.status.lastScheduleTime}");
    let last: k8s_openapi::jiff::Timestamp = last.parse().unwrap();
    assert_eq!(last.as_second(), minutes * 60);
    wait_for(&server, &["get", "job", &name], "{.status.succeeded}", "1");
    let ok = eventually(WAIT, || {
        !server
            .jsonpath(&["get", "cronjob", "tick"], "{.status.lastSuccessfulTime}")
            .is_empty()
    });
    assert!(
        ok,
        "{}",
        server.ok(&["get", "cronjob", "tick", "-o", "yaml"])
    );
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tick",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains(&format!("Created job {name}")), "{events}");
}
