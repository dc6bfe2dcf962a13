//! Pod cgroups and the eviction manager end to end, as root: a real
//! `rkube server` (agent-free) with a real `rkube agent` beside it (own
//! node name, data dir, kubelet port and cgroup root) and real kubectl.
//! Pods' cgroups are read from /sys/fs/cgroup (cgroup v1 here); local
//! storage limits and node memory pressure (a threshold above the
//! machine's memory) evict pods with upstream's reasons and messages.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::eventually;
use support::images::BUSYBOX as IMAGE;
use support::node::LocalNode;

/// A server and a Ready node whose pods may run 100 processes each.
fn start(node: &str) -> LocalNode {
    let mut c = LocalNode::new(node, |_| {});
    c.agent_args = vec!["--pod-max-pids".into(), "100".into()];
    c.start_agent();
    c.wait_node_ready();
    c
}

fn pod_yaml(name: &str, node: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n{body}"
    )
}

fn sleeper(resources: &str) -> String {
    format!(
        "  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n{resources}"
    )
}

#[test]
fn pod_cgroups_follow_qos_and_go_with_the_pod() {
    let mut c = start("evict-cgroups");
    let node = c.node.clone();
    c.apply(&pod_yaml(
        "guaranteed",
        &node,
        &sleeper("    resources:\n      limits: {cpu: 100m, memory: 64Mi}\n"),
    ));
    c.apply(&pod_yaml(
        "burstable",
        &node,
        &sleeper("    resources:\n      requests: {cpu: 200m}\n      limits: {memory: 32Mi}\n"),
    ));
    c.apply(&pod_yaml("besteffort", &node, &sleeper("")));
    for p in ["guaranteed", "burstable", "besteffort"] {
        c.wait_running(p);
    }
    let (g, b, e) = (c.uid("guaranteed"), c.uid("burstable"), c.uid("besteffort"));
    // The node level: kubepods with both QoS levels below it.
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        c.read_cgroup("cpu", "kubepods/cpu.shares"),
        (cpus * 1024).to_string()
    );
    assert_eq!(c.read_cgroup("cpu", "kubepods/besteffort/cpu.shares"), "2");
    // Guaranteed directly in kubepods with its limits.
    let gp = format!("kubepods/pod{g}");
    assert_eq!(
        c.read_cgroup("memory", &format!("{gp}/memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(c.read_cgroup("cpu", &format!("{gp}/cpu.shares")), "102");
    assert_eq!(
        c.read_cgroup("cpu", &format!("{gp}/cpu.cfs_quota_us")),
        "10000"
    );
    assert_eq!(
        c.read_cgroup("cpu", &format!("{gp}/cpu.cfs_period_us")),
        "100000"
    );
    // --pod-max-pids bounds every pod.
    assert_eq!(c.read_cgroup("pids", &format!("{gp}/pids.max")), "100");
    // Burstable: shares from its request, its memory limit (every
    // container has one), no CPU quota (none has a CPU limit); the
    // level's shares follow the Burstable pods' requests.
    let bp = format!("kubepods/burstable/pod{b}");
    assert_eq!(c.read_cgroup("cpu", &format!("{bp}/cpu.shares")), "204");
    assert_eq!(
        c.read_cgroup("memory", &format!("{bp}/memory.limit_in_bytes")),
        (32u64 << 20).to_string()
    );
    assert_eq!(
        c.read_cgroup("cpu", &format!("{bp}/cpu.cfs_quota_us")),
        "-1"
    );
    let ok = eventually(Duration::from_secs(30), || {
        c.read_cgroup("cpu", "kubepods/burstable/cpu.shares") == "204"
    });
    assert!(ok, "burstable level shares");
    // BestEffort: minimum shares, no memory limit.
    let ep = format!("kubepods/besteffort/pod{e}");
    assert_eq!(c.read_cgroup("cpu", &format!("{ep}/cpu.shares")), "2");
    let unlimited: u64 = c
        .read_cgroup("memory", &format!("{ep}/memory.limit_in_bytes"))
        .parse()
        .unwrap();
    assert!(unlimited > 1 << 50, "{unlimited}");
    // The container's process is in a cgroup below its pod's.
    let procs = |dir: PathBuf| -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                let p = std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap();
                out.extend(p.lines().map(str::to_string));
            }
        }
        out
    };
    let pids = procs(c.cgroup_file("memory", &gp));
    assert_eq!(pids.len(), 1, "one process below the pod: {pids:?}");
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", pids[0])).unwrap();
    assert!(
        own.contains(&format!("{}/{gp}/", c.cgroup_parent)),
        "container cgroup {own}"
    );
    // An agent restart re-adopts the pods: same containers, same cgroups.
    let cid = c.get(
        &["pod", "guaranteed"],
        "{.status.containerStatuses[0].containerID}",
    );
    c.kill_agent();
    let before = c.agent_logs().matches("re-adopted pod").count();
    c.eviction_hard = "nodefs.available<1%".into();
    c.start_agent();
    c.wait_node_ready();
    let adopted = eventually(Duration::from_secs(60), || {
        c.agent_logs().matches("re-adopted pod").count() >= before + 3
    });
    assert!(adopted, "pods not re-adopted:\n{}", c.agent_logs());
    assert_eq!(
        c.get(
            &["pod", "guaranteed"],
            "{.status.containerStatuses[0].containerID}"
        ),
        cid
    );
    assert_eq!(
        c.get(
            &["pod", "guaranteed"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(procs(c.cgroup_file("memory", &gp)), pids);
    // Deleted pods take their cgroups with them.
    c.server.ok(&[
        "delete",
        "pod",
        "guaranteed",
        "burstable",
        "besteffort",
        "--wait=false",
    ]);
    for rel in [&gp, &bp, &ep] {
        let gone = eventually(Duration::from_secs(60), || {
            !c.cgroup_file("memory", rel).exists() && !c.cgroup_file("cpu", rel).exists()
        });
        assert!(gone, "{rel} still there\n{}", c.agent_logs());
    }
    assert!(c.cgroup_file("memory", "kubepods/burstable").is_dir());
}

#[test]
fn local_storage_limits_evict_pods() {
    let c = start("evict-storage");
    let node = c.node.clone();
    // Writes 4 MiB into a 1Mi emptyDir.
    c.apply(&pod_yaml(
        "scratch",
        &node,
        &format!(
            "  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"dd if=/dev/zero of=/scratch/fill bs=1024 count=4096; sleep 3600\"]\n    volumeMounts:\n    - {{name: scratch, mountPath: /scratch}}\n  volumes:\n  - name: scratch\n    emptyDir: {{sizeLimit: 1Mi}}\n"
        ),
    ));
    // Writes 4 MiB into its own writable layer, limited to 2Mi.
    c.apply(&pod_yaml(
        "layer",
        &node,
        &format!(
            "  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"dd if=/dev/zero of=/fill bs=1024 count=4096; sleep 3600\"]\n    resources:\n      limits: {{ephemeral-storage: 2Mi}}\n"
        ),
    ));
    // Within its limits: stays.
    c.apply(&pod_yaml(
        "tidy",
        &node,
        &format!(
            "  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"dd if=/dev/zero of=/scratch/fill bs=1024 count=100; sleep 3600\"]\n    resources:\n      limits: {{ephemeral-storage: 20Mi}}\n    volumeMounts:\n    - {{name: scratch, mountPath: /scratch}}\n  volumes:\n  - name: scratch\n    emptyDir: {{sizeLimit: 1Mi}}\n"
        ),
    ));
    let long = Duration::from_secs(90);
    for (pod, message) in [
        (
            "scratch",
            "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ",
        ),
        (
            "layer",
            "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. ",
        ),
    ] {
        c.wait_within(&["pod", pod], "{.status.phase}", long, |p| p == "Failed");
        assert_eq!(c.get(&["pod", pod], "{.status.reason}"), "Evicted");
        assert_eq!(c.get(&["pod", pod], "{.status.message}"), message);
        assert_eq!(
            c.get(
                &["pod", pod],
                "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
            ),
            "TerminationByKubelet"
        );
        // Its container was killed, and is not restarted.
        c.wait_within(
            &["pod", pod],
            "{.status.containerStatuses[0].state.terminated.exitCode}",
            long,
            |s| s == "137",
        );
        let events = c.server.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod},reason=Evicted"),
            "-o",
            "jsonpath={.items[*].type}|{.items[*].message}",
        ]);
        assert_eq!(events, format!("Warning|{message}"));
    }
    assert_eq!(c.get(&["pod", "tidy"], "{.status.phase}"), "Running");
    assert_eq!(c.get(&["pod", "tidy"], "{.status.reason}"), "");
}

#[test]
fn memory_pressure_evicts_best_effort_first() {
    let mut c = start("evict-memory");
    let node = c.node.clone();
    c.apply(&pod_yaml("besteffort", &node, &sleeper("")));
    c.apply(&pod_yaml(
        "guaranteed",
        &node,
        &sleeper("    resources:\n      limits: {cpu: 50m, memory: 32Mi}\n"),
    ));
    c.wait_running("besteffort");
    c.wait_running("guaranteed");
    let pressure = "{.status.conditions[?(@.type==\"MemoryPressure\")].status}";
    assert_eq!(c.get(&["node", &node], pressure), "False");
    // The node restarts its kubelet with a threshold above all its memory.
    c.kill_agent();
    c.eviction_hard = "memory.available<1Pi".into();
    c.start_agent();
    let long = Duration::from_secs(120);
    c.wait_within(&["node", &node], pressure, long, |s| s == "True");
    assert_eq!(
        c.get(
            &["node", &node],
            "{.status.conditions[?(@.type==\"MemoryPressure\")].reason}"
        ),
        "KubeletHasInsufficientMemory"
    );
    // The node lifecycle controller taints the node for it.
    c.wait_within(&["node", &node], "{.spec.taints[*].key}", long, |t| {
        t.contains("node.kubernetes.io/memory-pressure")
    });
    c.wait_within(&["pod", "besteffort"], "{.status.phase}", long, |p| {
        p == "Failed"
    });
    let message = c.get(&["pod", "besteffort"], "{.status.message}");
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1Pi, available: "
        ),
        "{message}"
    );
    assert_eq!(c.get(&["pod", "besteffort"], "{.status.reason}"), "Evicted");
    // Pressure stays: the Guaranteed pod goes next, at a later pass.
    c.wait_within(&["pod", "guaranteed"], "{.status.phase}", long, |p| {
        p == "Failed"
    });
    let at = |pod: &str| {
        c.get(
            &["pod", pod],
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].lastTransitionTime}",
        )
    };
    let (first, second) = (at("besteffort"), at("guaranteed"));
    assert!(
        !first.is_empty() && first < second,
        "BestEffort evicted at {first:?}, Guaranteed at {second:?}"
    );
    // A new BestEffort pod is refused while the pressure lasts.
    c.apply(&pod_yaml("late", &node, &sleeper("")));
    c.wait_within(&["pod", "late"], "{.status.phase}", long, |p| p == "Failed");
    assert_eq!(c.get(&["pod", "late"], "{.status.reason}"), "Evicted");
    assert_eq!(
        c.get(&["pod", "late"], "{.status.message}"),
        "The node had condition: [MemoryPressure]. "
    );
}

#[test]
fn bad_eviction_thresholds_stop_the_agent_with_a_clear_error() {
    for (flag, want) in [
        (
            "cpu.available<1",
            "unsupported eviction signal \"cpu.available\"",
        ),
        ("nodefs.available<120%", "must be >= 0% and <= 100%"),
    ] {
        let err = support::agent_refuses(&["--eviction-hard", flag]);
        assert!(err.contains(want), "{flag}: {err}");
    }
}

#[test]
fn disk_and_pid_pressure_evict_and_refuse_pods() {
    let mut c = start("evict-disk-pid");
    let node = c.node.clone();
    c.apply(&pod_yaml("victim", &node, &sleeper("")));
    c.wait_running("victim");
    // Thresholds at all of the capacity: always met.
    c.kill_agent();
    c.eviction_hard = "nodefs.inodesFree<100%,pid.available<100%".into();
    c.start_agent();
    let long = Duration::from_secs(120);
    for condition in ["DiskPressure", "PIDPressure"] {
        let path = format!("{{.status.conditions[?(@.type==\"{condition}\")].status}}");
        c.wait_within(&["node", &node], &path, long, |s| s == "True");
    }
    assert_eq!(
        c.get(
            &["node", &node],
            "{.status.conditions[?(@.type==\"MemoryPressure\")].status}"
        ),
        "False"
    );
    c.wait_within(&["node", &node], "{.spec.taints[*].key}", long, |t| {
        t.contains("node.kubernetes.io/disk-pressure")
            && t.contains("node.kubernetes.io/pid-pressure")
    });
    // Disk is reclaimed before pids.
    c.wait_within(&["pod", "victim"], "{.status.phase}", long, |p| {
        p == "Failed"
    });
    let message = c.get(&["pod", "victim"], "{.status.message}");
    assert!(
        message.starts_with("The node was low on resource: inodes. Threshold quantity: "),
        "{message}"
    );
    // Under disk or pid pressure every new pod is refused, whatever its
    // QoS class.
    c.apply(&pod_yaml(
        "late",
        &node,
        &sleeper("    resources:\n      limits: {cpu: 50m, memory: 32Mi}\n"),
    ));
    c.wait_within(&["pod", "late"], "{.status.phase}", long, |p| p == "Failed");
    assert_eq!(
        c.get(&["pod", "late"], "{.status.message}"),
        "The node had condition: [DiskPressure PIDPressure]. "
    );
    let events = c.server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=late,reason=Evicted",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert_eq!(
        events,
        "The node had condition: [DiskPressure PIDPressure]. "
    );
}

/// Soft thresholds: the condition at once, the eviction only after the
/// grace period, and a graceful stop (the container's TERM trap runs to
/// its end, where a hard eviction's one second would cut it short).
#[test]
fn soft_thresholds_wait_their_grace_period_and_stop_pods_gracefully() {
    let mut c = start("evict-soft");
    let node = c.node.clone();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: graceful\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 60\n  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"trap 'sleep 3; echo graceful-exit; exit 0' TERM; echo started; while true; do sleep 1; done\"]\n"
    ));
    c.wait_running("graceful");
    // Under pressure new pods are refused: the pod runs first, then the
    // agent comes back with a soft threshold that is always met, but
    // only evicts after holding 20 s; victims get up to 10 s.
    c.kill_agent();
    c.agent_args.extend(
        [
            "--eviction-soft",
            "nodefs.inodesFree<100%",
            "--eviction-soft-grace-period",
            "nodefs.inodesFree=20s",
            "--eviction-max-pod-grace-period",
            "10",
        ]
        .map(String::from),
    );
    c.start_agent();
    let long = Duration::from_secs(120);
    c.wait_within(
        &["node", &node],
        "{.status.conditions[?(@.type==\"DiskPressure\")].status}",
        long,
        |s| s == "True",
    );
    // The condition came first; the pod is still running a while after.
    let started = std::time::Instant::now();
    assert_eq!(c.get(&["pod", "graceful"], "{.status.phase}"), "Running");
    c.wait_within(&["pod", "graceful"], "{.status.phase}", long, |p| {
        p == "Failed"
    });
    assert_eq!(c.get(&["pod", "graceful"], "{.status.reason}"), "Evicted");
    let message = c.get(&["pod", "graceful"], "{.status.message}");
    assert!(
        message.starts_with("The node was low on resource: inodes."),
        "{message}"
    );
    let log = c.logs("graceful");
    assert!(
        log.contains("graceful-exit"),
        "the TERM trap should have run to its end:\n{log}\nafter {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.get(
            &["pod", "graceful"],
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "0"
    );
}

#[test]
fn bad_minimum_reclaim_is_refused() {
    let err = support::agent_refuses(&["--eviction-minimum-reclaim", "memory.available=lots"]);
    assert!(
        err.contains("invalid eviction quantity \"lots\" for memory.available"),
        "{err}"
    );
}

#[test]
fn soft_thresholds_need_grace_periods() {
    let err = support::agent_refuses(&["--eviction-soft", "memory.available<1Gi"]);
    assert!(
        err.contains(
            "grace period must be specified for the soft eviction threshold memory.available"
        ),
        "{err}"
    );
}
