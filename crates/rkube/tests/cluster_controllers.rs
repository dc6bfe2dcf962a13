//! The cluster-level controllers against the real server with real
//! kubectl: Endpoints and EndpointSlices, node lifecycle with taint
//! eviction and pod GC, disruption budgets under cordon/drain, resource
//! quota usage, and TTL after finished.
//!
//! The node lifecycle timing comes from the environment (see
//! `rkube_controllers::nodelifecycle`); every test here starts its server
//! with the same short settings, set once before any server starts.

mod support;

use std::sync::Once;
use std::time::Duration;

use support::agent::Agent;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(40);

/// Short controller timings for every server of this file. The grace
/// period stays above the simulated nodes' 10 s Lease renewal.
fn start() -> Server {
    static ENV: Once = Once::new();
    ENV.call_once(|| {
        std::env::set_var("RKUBE_NODE_MONITOR_GRACE_PERIOD", "15s");
        std::env::set_var("RKUBE_NODE_MONITOR_PERIOD", "1s");
        std::env::set_var("RKUBE_POD_GC_PERIOD", "1s");
        std::env::set_var("RKUBE_POD_GC_QUARANTINE", "2s");
    });
    Server::start()
}

fn wait_for(server: &Server, args: &[&str], path: &str, want: &str) {
    server.wait_jsonpath(WAIT, args, path, want, || server.log_tail(30));
}

/// The whitespace-split row of `kubectl get` output starting with `name`.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn web_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n  \
         containers:\n  - name: main\n    image: busybox:1.36\n    ports:\n    \
         - name: http\n      containerPort: 8080\n"
    )
}

/// Make a pod Running with `ip`, Ready or not. No node runs these pods
/// (no node exists, so they stay unscheduled and no kubelet, node
/// lifecycle or pod GC pass touches them).
fn set_pod_status(server: &Server, name: &str, ip: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{ready}"}}]}}}}"#
    );
    server.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn endpoints_and_slices_list_ready_pods_and_drop_unready_ones() {
    let server = start();
    for name in ["web-1", "web-2"] {
        server.ok_stdin(&["apply", "-f", "-"], &web_pod(name));
    }
    set_pod_status(&server, "web-1", "10.42.0.11", true);
    set_pod_status(&server, "web-2", "10.42.0.12", true);
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    team: a\nspec:\n  \
         selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n",
    );
    // A Service without a selector is left to its user.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: manual\nspec:\n  ports:\n  - port: 81\n",
    );

    let mut table = String::new();
    let ok = eventually(WAIT, || {
        table = server.ok(&["get", "endpoints", "web"]);
        table.contains("10.42.0.11:8080,10.42.0.12:8080")
    });
    assert!(ok, "endpoints never listed both pods:\n{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ENDPOINTS", "AGE"]);
    assert_eq!(
        server.jsonpath(&["get", "endpoints", "web"], "{.metadata.labels.team}"),
        "a"
    );

    let slices = server.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let header: Vec<&str> = slices.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    let cells: Vec<&str> = slices.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(cells[0].starts_with("web-"), "{cells:?}");
    assert_eq!(&cells[1..3], ["IPv4", "8080"]);
    let mut ips: Vec<&str> = cells[3].split(',').collect();
    ips.sort();
    assert_eq!(ips, ["10.42.0.11", "10.42.0.12"]);
    let slice = [
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ];
    assert_eq!(
        server.jsonpath(
            &slice,
            "{.items[0].metadata.labels.endpointslice\\.kubernetes\\.io/managed-by}"
        ),
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        server.jsonpath(
            &slice,
            "{.items[0].metadata.ownerReferences[0].kind}/{.items[0].metadata.ownerReferences[0].name}"
        ),
        "Service/web"
    );

    // web-2 stops being ready: it leaves the addresses for notReadyAddresses,
    // and its slice endpoint says ready=false.
    set_pod_status(&server, "web-2", "10.42.0.12", false);
    wait_for(
        &server,
        &["get", "endpoints", "web"],
        "{.subsets[0].addresses[*].ip}/{.subsets[0].notReadyAddresses[*].ip}",
        "10.42.0.11/10.42.0.12",
    );
    assert_eq!(
        row(&server.ok(&["get", "endpoints", "web"]), "web")[1],
        "10.42.0.11:8080"
    );
    wait_for(
        &server,
        &slice,
        "{.items[0].endpoints[?(@.targetRef.name==\"web-2\")].conditions.ready}",
        "false",
    );

    // The selector-less Service got nothing from the controllers.
    assert!(server
        .fails(&["get", "endpoints", "manual"])
        .contains("NotFound"));
    assert_eq!(
        server
            .ok(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=manual",
                "-o",
                "name"
            ])
            .trim(),
        ""
    );

    // User-managed Endpoints of the selector-less Service are mirrored.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: manual\nsubsets:\n- addresses:\n  \
         - ip: 192.168.5.5\n  ports:\n  - port: 81\n",
    );
    let mirrored = [
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=manual",
    ];
    wait_for(
        &server,
        &mirrored,
        "{.items[0].metadata.labels.endpointslice\\.kubernetes\\.io/managed-by} {.items[0].endpoints[0].addresses[0]}",
        "endpointslicemirroring-controller.k8s.io 192.168.5.5",
    );
    let table = server.ok(&mirrored);
    let cells: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(cells[0].starts_with("manual-"), "{table}");
    assert_eq!(&cells[1..4], ["IPv4", "81", "192.168.5.5"]);
    // The controller's own Endpoints are marked so they are not mirrored.
    assert_eq!(
        server.jsonpath(
            &["get", "endpoints", "web"],
            "{.metadata.labels.endpointslice\\.kubernetes\\.io/skip-mirror}"
        ),
        "true"
    );

    // Deleting the Service takes its Endpoints and slices along.
    server.ok(&["delete", "service", "web"]);
    let ok = eventually(WAIT, || {
        !server
            .kubectl(&["get", "endpoints", "web"])
            .status
            .success()
            && server
                .ok(&[
                    "get",
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=web",
                    "-o",
                    "name",
                ])
                .trim()
                .is_empty()
    });
    assert!(ok, "endpoints or slices of a deleted service remain");
}

fn sim_pod(name: &str, node: &str, labels: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n{labels}spec:\n  \
         nodeName: {node}\n  terminationGracePeriodSeconds: 1\n{extra_spec}  containers:\n  \
         - name: main\n    image: busybox:1.36\n"
    )
}

fn wait_running(server: &Server, pod: &str) {
    wait_for(
        server,
        &["get", "pod", pod],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );
}

#[test]
fn a_node_that_stops_renewing_its_lease_goes_not_ready_and_its_pods_are_evicted() {
    let server = start();
    let agent = Agent::simulate(&server, 1, "lc", &[]);
    // A second node stays up: with every node down the controller would
    // take it for its own outage and evict nothing (upstream's
    // full-disruption mode).
    let _up = Agent::simulate(&server, 1, "up", &[]);
    wait_for(
        &server,
        &["get", "node", "lc-0"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );
    let quick =
        "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    \
                 effect: NoExecute\n    tolerationSeconds: 2\n";
    server.ok_stdin(
        &["apply", "-f", "-"],
        &sim_pod("quick", "lc-0", "    app: x\n", quick),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &sim_pod("stays", "lc-0", "    app: x\n", ""),
    );
    wait_running(&server, "quick");
    wait_running(&server, "stays");
    // The API server's DefaultTolerationSeconds gave "stays" 300 s.
    assert_eq!(
        server.jsonpath(
            &["get", "pod", "stays"],
            "{.spec.tolerations[?(@.key==\"node.kubernetes.io/unreachable\")].tolerationSeconds}"
        ),
        "300"
    );

    agent.kill();
    wait_for(
        &server,
        &["get", "node", "lc-0"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "Unknown",
    );
    assert_eq!(
        row(&server.ok(&["get", "node", "lc-0"]), "lc-0")[1],
        "NotReady"
    );
    assert_eq!(
        server.jsonpath(
            &["get", "node", "lc-0"],
            "{.status.conditions[?(@.type==\"Ready\")].message}"
        ),
        "Kubelet stopped posting node status."
    );
    wait_for(
        &server,
        &["get", "node", "lc-0"],
        "{range .spec.taints[*]}{.key}:{.effect} {end}",
        "node.kubernetes.io/unreachable:NoSchedule node.kubernetes.io/unreachable:NoExecute ",
    );
    // Pods on the node are no longer ready...
    wait_for(
        &server,
        &["get", "pod", "stays"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "False",
    );
    // ...and the one tolerating unreachable for 2 s is evicted.
    wait_for(
        &server,
        &["get", "pod", "quick"],
        "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
        "DeletionByTaintManager",
    );
    assert!(
        !server
            .jsonpath(&["get", "pod", "quick"], "{.metadata.deletionTimestamp}")
            .is_empty(),
        "quick should be terminating"
    );
    assert!(
        server
            .jsonpath(&["get", "pod", "stays"], "{.metadata.deletionTimestamp}")
            .is_empty(),
        "stays tolerates the taint for 300 s"
    );
    // Both controllers said what they did, as upstream's do.
    let ok = eventually(WAIT, || {
        let events = server.ok(&["get", "events"]);
        events.contains("TaintManagerEviction")
            && events.contains("Marking for deletion Pod default/quick")
            && events.contains("Node lc-0 status is now: NodeNotReady")
    });
    assert!(ok, "events:\n{}", server.ok(&["get", "events"]));

    // With the node gone, pod GC force-deletes what was bound to it.
    server.ok(&["delete", "node", "lc-0"]);
    let ok = eventually(WAIT, || {
        server.ok(&["get", "pods", "-o", "name"]).trim().is_empty()
    });
    assert!(
        ok,
        "pods of a deleted node remain:\n{}",
        server.ok(&["get", "pods"])
    );
}

#[test]
fn cordon_drain_and_uncordon_respect_a_disruption_budget() {
    let server = start();
    let _agent = Agent::simulate(&server, 1, "dr", &[]);
    wait_for(
        &server,
        &["get", "node", "dr-0"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );
    for name in ["db-0", "db-1"] {
        server.ok_stdin(
            &["apply", "-f", "-"],
            &sim_pod(name, "dr-0", "    app: db\n", ""),
        );
    }
    server.ok(&[
        "create",
        "pdb",
        "db",
        "--selector=app=db",
        "--min-available=2",
    ]);
    wait_running(&server, "db-0");
    wait_running(&server, "db-1");
    wait_for(
        &server,
        &["get", "pdb", "db"],
        "{.status.currentHealthy}/{.status.desiredHealthy}/{.status.expectedPods}/{.status.disruptionsAllowed}",
        "2/2/2/0",
    );
    let pdb = row(&server.ok(&["get", "pdb", "db"]), "db");
    assert_eq!(&pdb[1..4], ["2", "N/A", "0"]);
    assert_eq!(
        server.jsonpath(
            &["get", "pdb", "db"],
            "{.status.conditions[0].type}={.status.conditions[0].status}/{.status.conditions[0].reason}"
        ),
        "DisruptionAllowed=False/InsufficientPods"
    );

    server.ok(&["cordon", "dr-0"]);
    wait_for(
        &server,
        &["get", "node", "dr-0"],
        "{.spec.taints[*].key}",
        "node.kubernetes.io/unschedulable",
    );
    assert_eq!(
        row(&server.ok(&["get", "node", "dr-0"]), "dr-0")[1],
        "Ready,SchedulingDisabled"
    );

    // The budget allows no disruption: drain gives up.
    let err = server.fails(&[
        "drain",
        "dr-0",
        "--force",
        "--grace-period=1",
        "--timeout=5s",
    ]);
    assert!(
        err.contains("disruption budget"),
        "drain should report the budget:\n{err}"
    );
    assert_eq!(server.ok(&["get", "pods", "-o", "name"]).lines().count(), 2);

    // Loosen the budget: now drain evicts both pods and finishes.
    server.ok(&[
        "patch",
        "pdb",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    wait_for(
        &server,
        &["get", "pdb", "db"],
        "{.status.disruptionsAllowed}",
        "2",
    );
    let out = server.ok(&[
        "drain",
        "dr-0",
        "--force",
        "--grace-period=1",
        "--timeout=60s",
    ]);
    assert!(out.contains("node/dr-0 drained"), "{out}");
    assert_eq!(server.ok(&["get", "pods", "-o", "name"]).trim(), "");

    server.ok(&["uncordon", "dr-0"]);
    wait_for(
        &server,
        &["get", "node", "dr-0"],
        "{.spec.taints[*].key}",
        "",
    );
    assert_eq!(
        row(&server.ok(&["get", "node", "dr-0"]), "dr-0")[1],
        "Ready"
    );
}

/// Wait until `kubectl describe quota q -n team` shows `used` for `resource`.
fn wait_quota(server: &Server, resource: &str, used: &str) {
    let mut described = String::new();
    let ok = eventually(WAIT, || {
        described = server.ok(&["describe", "quota", "q", "-n", "team"]);
        described.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.len() == 3 && cells[0] == resource && cells[1] == used
        })
    });
    assert!(ok, "{resource} never used {used}:\n{described}");
}

#[test]
fn quota_usage_shows_in_describe_and_finished_jobs_expire() {
    let server = start();
    let _agent = Agent::simulate(&server, 1, "qt", &[]);
    server.ok(&["create", "namespace", "team"]);
    server.ok(&[
        "create",
        "quota",
        "q",
        "-n",
        "team",
        "--hard=pods=5,requests.cpu=1,requests.memory=1Gi,services=3,configmaps=10,count/jobs.batch=2",
    ]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: team\nspec:\n  \
               nodeName: qt-0\n  containers:\n  - name: main\n    image: busybox:1.36\n    \
               resources:\n      requests:\n        cpu: 250m\n        memory: 128Mi\n";
    server.ok_stdin(&["apply", "-f", "-"], pod);
    server.ok(&[
        "create",
        "service",
        "clusterip",
        "s",
        "-n",
        "team",
        "--tcp=80:80",
    ]);
    // kube-root-ca.crt is the namespace's one ConfigMap.
    let want = [
        ("configmaps", "1", "10"),
        ("count/jobs.batch", "0", "2"),
        ("pods", "1", "5"),
        ("requests.cpu", "250m", "1"),
        ("requests.memory", "128Mi", "1Gi"),
        ("services", "1", "3"),
    ];
    let mut described = String::new();
    let ok = eventually(WAIT, || {
        described = server.ok(&["describe", "quota", "q", "-n", "team"]);
        want.iter().all(|(r, used, hard)| {
            described
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [*r, *used, *hard])
        })
    });
    assert!(ok, "describe quota:\n{described}");
    assert!(described.contains("Resource"), "{described}");

    // The Job counts while it exists; it runs `true`, finishes, and is
    // deleted 5 s later. Its pod states cpu and memory requests, which
    // quota admission requires while the quota limits them.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\n  namespace: team\nspec:\n  \
         ttlSecondsAfterFinished: 5\n  template:\n    spec:\n      restartPolicy: Never\n      \
         containers:\n      - name: main\n        image: busybox:1.36\n        command: [\"true\"]\n        \
         resources:\n          requests: {cpu: 100m, memory: 64Mi}\n",
    );
    wait_quota(&server, "count/jobs.batch", "1");
    let ok = eventually(Duration::from_secs(60), || {
        !server
            .kubectl(&["get", "job", "once", "-n", "team"])
            .status
            .success()
    });
    assert!(
        ok,
        "job not deleted after its TTL:\n{}",
        server.ok(&["get", "job", "once", "-n", "team", "-o", "yaml"])
    );
    wait_quota(&server, "count/jobs.batch", "0");
}
