//! `rkube agent --simulate N` against the real server with real kubectl:
//! nodes and Leases, pods bound to simulated nodes run, complete, fail,
//! crash-loop and go away when deleted.

mod support;

use std::time::Duration;

use support::agent::Agent;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(30);
/// Selects simulated nodes only (the server may run a real one).
const SIMULATED: &str = "rkube.io/simulated=true";

fn pod_yaml(
    name: &str,
    node: Option<&str>,
    restart: &str,
    command: &[&str],
    extra: &str,
) -> String {
    let node = node.map_or(String::new(), |n| format!("  nodeName: {n}\n"));
    let command = if command.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = command.iter().map(|c| format!("{c:?}")).collect();
        format!("    command: [{}]\n", quoted.join(", "))
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{node}  restartPolicy: {restart}\n  \
         containers:\n  - name: main\n    image: busybox:1.36\n{command}{extra}"
    )
}

fn wait_for(server: &Server, args: &[&str], path: &str, want: &str) {
    server.wait_jsonpath(WAIT, args, path, want, String::new);
}

#[test]
fn nodes_register_ready_with_leases_and_come_back_when_deleted() {
    let server = Server::start();
    let agent = Agent::simulate(
        &server,
        3,
        "sim",
        &[
            "--simulate-labels",
            "zone=a",
            "--simulate-cpu",
            "8",
            "--simulate-taints",
            "example.com/sim=yes:PreferNoSchedule",
        ],
    );
    let ok = eventually(WAIT, || {
        let out = server.kubectl(&["get", "nodes", "--no-headers", "-l", SIMULATED]);
        String::from_utf8_lossy(&out.stdout)
            .matches(" Ready ")
            .count()
            == 3
    });
    assert!(
        ok,
        "3 Ready nodes expected:\n{}\nagent log:\n{}",
        server.ok(&["get", "nodes", "-o", "yaml"]),
        agent.log()
    );

    let table = server.ok(&["get", "nodes", "-o", "wide", "-l", SIMULATED]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("sim-1 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["sim-1", "Ready", "<none>"]);
    assert!(row[4].starts_with("v1.33."), "{row:?}");
    assert_eq!(row[5], "172.16.0.3");

    let labels = server.ok(&[
        "get",
        "nodes",
        "-l",
        "zone=a,kubernetes.io/os=linux",
        "-o",
        "name",
    ]);
    assert_eq!(labels.lines().count(), 3, "{labels}");
    assert_eq!(
        server.jsonpath(&["get", "node", "sim-2"], "{.status.allocatable.cpu}"),
        "8"
    );
    assert_eq!(
        server.jsonpath(&["get", "node", "sim-2"], "{.spec.podCIDR}"),
        "10.64.2.0/24"
    );
    let conditions = server.jsonpath(
        &["get", "node", "sim-0"],
        "{range .status.conditions[*]}{.type}={.status} {end}",
    );
    assert_eq!(
        conditions.trim(),
        "MemoryPressure=False DiskPressure=False PIDPressure=False Ready=True"
    );

    assert_eq!(
        server.jsonpath(
            &["get", "node", "sim-0"],
            "{.spec.taints[0].key}={.spec.taints[0].value}:{.spec.taints[0].effect}"
        ),
        "example.com/sim=yes:PreferNoSchedule"
    );

    // Leases, held by their node.
    wait_for(
        &server,
        &["get", "lease", "-n", "kube-node-lease", "sim-0"],
        "{.spec.holderIdentity}",
        "sim-0",
    );
    assert_eq!(
        server.jsonpath(
            &["get", "lease", "-n", "kube-node-lease", "sim-0"],
            "{.metadata.ownerReferences[0].kind}"
        ),
        "Node"
    );

    // A deleted node registers again (with a new uid).
    let uid = server.jsonpath(&["get", "node", "sim-1"], "{.metadata.uid}");
    server.ok(&["delete", "node", "sim-1"]);
    let ok = eventually(WAIT, || {
        let now = server.jsonpath(&["get", "node", "sim-1"], "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    assert!(
        ok,
        "sim-1 not registered again; agent log:\n{}",
        agent.log()
    );
}

#[test]
fn lease_renewal_stops_with_the_agent() {
    let server = Server::start();
    let agent = Agent::simulate(&server, 1, "lz", &[]);
    let lease = ["get", "lease", "-n", "kube-node-lease", "lz-0"];
    let mut first = String::new();
    assert!(eventually(WAIT, || {
        first = server.jsonpath(&lease, "{.spec.renewTime}");
        !first.is_empty()
    }));
    // Renewed every 10 s while the agent runs.
    let mut second = String::new();
    let renewed = eventually(Duration::from_secs(25), || {
        second = server.jsonpath(&lease, "{.spec.renewTime}");
        second != first
    });
    assert!(renewed, "lease not renewed; agent log:\n{}", agent.log());
    agent.kill();
    let last = server.jsonpath(&lease, "{.spec.renewTime}");
    let moved = eventually(Duration::from_secs(13), || {
        server.jsonpath(&lease, "{.spec.renewTime}") != last
    });
    assert!(!moved, "lease still renewed after the agent was killed");
}

#[test]
fn pods_run_complete_fail_crash_and_delete() {
    let server = Server::start();
    let agent = Agent::simulate(&server, 2, "sim", &[]);
    assert!(eventually(WAIT, || server
        .kubectl(&["get", "node", "sim-1"])
        .status
        .success()));

    let probe =
        "    readinessProbe:\n      initialDelaySeconds: 3\n      tcpSocket:\n        port: 80\n";
    for (name, restart, command, extra) in [
        ("web", "Always", &[][..], probe),
        ("ok", "Never", &["true"][..], ""),
        ("bad", "Never", &["false"][..], ""),
        ("crash", "Always", &["sh", "-c", "exit 3"][..], ""),
        (
            "onfail",
            "OnFailure",
            &["sh", "-c", "sleep 1; exit 0"][..],
            "",
        ),
    ] {
        server.ok_stdin(
            &["apply", "-f", "-"],
            &pod_yaml(name, Some("sim-1"), restart, command, extra),
        );
    }

    // Running, then Ready once the probe's initial delay has passed.
    wait_for(
        &server,
        &["get", "pod", "web"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );
    let times = server.jsonpath(
        &["get", "pod", "web"],
        "{.status.containerStatuses[0].state.running.startedAt} \
         {.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
    );
    let times: Vec<k8s_openapi::jiff::Timestamp> = times
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(
        times[1].duration_since(times[0]).as_secs() >= 3,
        "Ready before the readiness probe's initialDelaySeconds: {times:?}"
    );
    let wide = server.ok(&["get", "pod", "web", "-o", "wide", "--no-headers"]);
    let cols: Vec<&str> = wide.split_whitespace().collect();
    assert_eq!(&cols[..3], ["web", "1/1", "Running"], "{wide}");
    assert!(
        cols[5].starts_with("10.64.1."),
        "pod IP from the node's podCIDR: {wide}"
    );
    assert_eq!(cols[6], "sim-1");
    assert_eq!(
        server.jsonpath(&["get", "pod", "web"], "{.status.hostIP}"),
        "172.16.0.3"
    );
    assert_eq!(
        server.jsonpath(&["get", "pod", "web"], "{.status.qosClass}"),
        "BestEffort"
    );
    let cs = server.jsonpath(
        &["get", "pod", "web"],
        "{.status.containerStatuses[0].started} {.status.containerStatuses[0].imageID}",
    );
    assert!(
        cs.starts_with("true docker.io/library/busybox@sha256:"),
        "{cs}"
    );

    // activeDeadlineSeconds fails a running pod, as the kubelet does.
    let deadline = pod_yaml("deadline", Some("sim-0"), "Always", &[], "")
        .replace("  containers:", "  activeDeadlineSeconds: 2\n  containers:");
    server.ok_stdin(&["apply", "-f", "-"], &deadline);

    // true ends Succeeded (Completed), false Failed (Error).
    wait_for(
        &server,
        &["get", "pod", "ok"],
        "{.status.phase}",
        "Succeeded",
    );
    wait_for(&server, &["get", "pod", "bad"], "{.status.phase}", "Failed");
    wait_for(
        &server,
        &["get", "pod", "onfail"],
        "{.status.phase}",
        "Succeeded",
    );
    assert_eq!(
        server.jsonpath(
            &["get", "pod", "bad"],
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "1"
    );
    let table = server.ok(&["get", "pods", "--no-headers"]);
    let status = |name: &str| {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or("");
        line.split_whitespace().nth(2).unwrap_or("").to_string()
    };
    assert_eq!(status("ok"), "Completed", "{table}");
    assert_eq!(status("bad"), "Error", "{table}");

    wait_for(
        &server,
        &["get", "pod", "deadline"],
        "{.status.phase} {.status.reason}",
        "Failed DeadlineExceeded",
    );

    // exit 3 with restartPolicy Always crash-loops, counting restarts.
    wait_for(
        &server,
        &["get", "pod", "crash"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CrashLoopBackOff",
    );
    let crash = server.jsonpath(
        &["get", "pod", "crash"],
        "{.status.phase} {.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(crash, "Running 3");
    let restarts: i32 = server
        .jsonpath(
            &["get", "pod", "crash"],
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse()
        .unwrap();
    assert!(restarts >= 1);

    // Deleting waits for the (shortened) grace period, then the pod is gone.
    let started = std::time::Instant::now();
    server.ok(&["delete", "pod", "web", "--wait=true", "--timeout=30s"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    let out = server.kubectl(&["get", "pod", "web"]);
    assert!(!out.status.success(), "pod web still there");
    assert!(agent_alive(agent));
}

fn agent_alive(mut agent: Agent) -> bool {
    agent.running()
}

#[test]
fn the_scheduler_places_pods_on_simulated_nodes() {
    let server = Server::start();
    let _agent = Agent::simulate(&server, 3, "sched", &[]);
    assert!(eventually(WAIT, || server
        .kubectl(&["get", "node", "sched-2"])
        .status
        .success()));
    // The selector keeps it off a real node the server may run too.
    let yaml = pod_yaml("floating", None, "Always", &[], "").replace(
        "  containers:",
        "  nodeSelector:\n    rkube.io/simulated: \"true\"\n  containers:",
    );
    server.ok_stdin(&["apply", "-f", "-"], &yaml);
    wait_for(
        &server,
        &["get", "pod", "floating"],
        "{.status.phase}",
        "Running",
    );
    let node = server.jsonpath(&["get", "pod", "floating"], "{.spec.nodeName}");
    assert!(node.starts_with("sched-"), "{node}");
}

const JOB: &str = "apiVersion: batch/v1
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
      nodeSelector:
        rkube.io/simulated: \"true\"
      containers:
      - name: main
        image: busybox:1.36
        command: [\"sh\", \"-c\", \"sleep 1; exit CODE\"]
";

#[test]
fn jobs_finish_and_fail_on_simulated_nodes() {
    let server = Server::start();
    let agent = Agent::simulate(&server, 2, "job", &[]);
    assert!(eventually(WAIT, || server
        .kubectl(&["get", "node", "job-1"])
        .status
        .success()));
    let job = |name: &str, code: &str| JOB.replace("NAME", name).replace("CODE", code);
    server.ok_stdin(&["apply", "-f", "-"], &job("works", "0"));
    server.ok_stdin(&["apply", "-f", "-"], &job("breaks", "1"));
    let ok = eventually(Duration::from_secs(60), || {
        server.jsonpath(&["get", "job", "works"], "{.status.succeeded}") == "4"
    });
    assert!(
        ok,
        "job did not complete: {}\n{}",
        server.ok(&["get", "job,pods", "-o", "wide"]),
        agent.log()
    );
    wait_for(
        &server,
        &["get", "job", "works"],
        "{.status.conditions[?(@.type==\"Complete\")].status}",
        "True",
    );
    wait_for(
        &server,
        &["get", "job", "breaks"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
        "BackoffLimitExceeded",
    );
}

/// Resident and peak memory (KiB) and CPU time (s) of the `rkube agent`
/// simulating `prefix`, from /proc.
fn agent_usage(prefix: &str) -> (u64, u64, f64) {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args
            .windows(2)
            .any(|w| w[0] == b"--simulate-prefix" && w[1] == prefix.as_bytes());
        if !ours || !args.iter().any(|a| *a == b"agent") {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // utime and stime: fields 14 and 15, counted after the ")" that
        // ends the command name.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11..13]
            .iter()
            .filter_map(|f| f.parse::<f64>().ok())
            .sum();
        return (kib("VmRSS:"), kib("VmHWM:"), ticks / 100.0);
    }
    (0, 0, 0.0)
}

/// How many of the simulated pods are Running (metadata-only list).
async fn running(pods: &kube::Api<k8s_openapi::api::core::v1::Pod>) -> usize {
    let lp = kube::api::ListParams::default().fields("status.phase=Running");
    pods.list_metadata(&lp).await.map_or(0, |l| l.items.len())
}

/// 1,000 simulated nodes and 10,000 pods bound to them (sizes from
/// SIM_NODES and SIM_PODS): how long registration takes, how fast the
/// pods become Running, and the agent's memory.
#[test]
#[ignore = "benchmark: cargo test -p rkube --test simulate scale -- --ignored --nocapture"]
fn scale_nodes_and_pods() {
    use std::time::Instant;

    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (nodes, pods) = (env("SIM_NODES", 1000), env("SIM_PODS", 10_000));
    let server = Server::start_with(&["--disable-controller-manager", "--disable-scheduler"]);
    let t0 = Instant::now();
    let agent = Agent::simulate(&server, nodes, "scale", &[]);
    let ok = eventually(Duration::from_secs(300), || {
        agent.log().contains("simulated nodes registered")
    });
    assert!(ok, "nodes not registered:\n{}", agent.log());
    let registered = t0.elapsed();
    let (rss_nodes, _, _) = agent_usage("scale");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (created, all_running) = rt.block_on(async {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::Pod;

        let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let api: kube::Api<Pod> = kube::Api::namespaced(client, "default");
        let t1 = Instant::now();
        futures::stream::iter(0..pods)
            .map(|i| {
                let api = api.clone();
                async move {
                    let pod: Pod = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("p-{i}"), "labels": {"app": "scale"}},
                        "spec": {"nodeName": format!("scale-{}", i % nodes),
                            "containers": [{"name": "main", "image": "nginx:1.25"}]}
                    }))
                    .unwrap();
                    api.create(&Default::default(), &pod).await.unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        let created = t1.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        while running(&api).await < pods as usize {
            assert!(Instant::now() < deadline, "pods not Running in time");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (created, t1.elapsed())
    });
    let (rss, peak, cpu) = agent_usage("scale");
    println!(
        "simulate: {nodes} nodes registered in {:.1}s (agent RSS {} MiB); {pods} pods created in \
         {:.1}s, all Running after {:.1}s ({:.0} pods/s); agent RSS {} MiB, peak {} MiB, CPU {:.1}s",
        registered.as_secs_f64(),
        rss_nodes / 1024,
        created.as_secs_f64(),
        all_running.as_secs_f64(),
        pods as f64 / all_running.as_secs_f64(),
        rss / 1024,
        peak / 1024,
        cpu,
    );
}

#[test]
fn a_restarted_agent_adopts_its_pods_without_rewriting_them() {
    let server = Server::start();
    let agent = Agent::simulate(&server, 1, "again", &[]);
    assert!(eventually(WAIT, || server
        .kubectl(&["get", "node", "again-0"])
        .status
        .success()));
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("steady", Some("again-0"), "Always", &[], ""),
    );
    wait_for(
        &server,
        &["get", "pod", "steady"],
        "{.status.phase}",
        "Running",
    );
    let before = server.jsonpath(
        &["get", "pod", "steady"],
        "{.metadata.resourceVersion} {.status.podIP}",
    );
    agent.kill();

    let agent = Agent::simulate(&server, 1, "again", &[]);
    // A pod created after the restart runs, so the new agent has synced.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("fresh", Some("again-0"), "Always", &[], ""),
    );
    let ok = eventually(WAIT, || {
        server.jsonpath(&["get", "pod", "fresh"], "{.status.phase}") == "Running"
    });
    assert!(ok, "new pod not Running after restart:\n{}", agent.log());
    let after = server.jsonpath(
        &["get", "pod", "steady"],
        "{.metadata.resourceVersion} {.status.podIP}",
    );
    assert_eq!(before, after, "the running pod was written again");
    let fresh_ip = server.jsonpath(&["get", "pod", "fresh"], "{.status.podIP}");
    assert_ne!(
        before.split_whitespace().nth(1),
        Some(fresh_ip.as_str()),
        "address handed out twice"
    );
    assert_eq!(
        server.jsonpath(
            &["get", "node", "again-0"],
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "True"
    );
}

#[test]
fn simulated_nodes_join_with_the_server_token() {
    let server = Server::start();
    let token = std::fs::read_to_string(server.dir.path().join("server/token")).unwrap();
    let url = format!("https://127.0.0.1:{}", server.port);
    let data = server.dir.path().join("joined-sim");
    let log = server.dir.path().join("joined-sim.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["agent", "--simulate", "2", "--simulate-prefix", "joined"])
        .args(["--server", &url, "--token", token.trim()])
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let ok = eventually(WAIT, || {
        server.jsonpath(
            &["get", "node", "joined-1"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok,
        "joined simulator did not register:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
