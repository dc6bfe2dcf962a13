//! The kubelet end to end, as root: a real `rkube server` (agent-free),
//! a real `rkube agent` beside it with its own node name, data dir,
//! kubelet port and cgroup parent, and real kubectl. The busybox image is
//! built from Debian's busybox-static by the project's image builder and
//! dropped into `<data-dir>/agent/images` as an OCI archive, which the
//! agent imports at start (the air-gapped path).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::images::BUSYBOX as IMAGE;
use support::node::LocalNode;
use support::{eventually, free_port, Server};

fn pod_yaml(name: &str, node: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n{body}"
    )
}

#[test]
fn node_registers_and_pods_run() {
    let c = LocalNode::start("kubelet-basic");
    // Node: capacity, addresses, nodeInfo, lease.
    let cap = c.get(
        &["node", &c.node],
        "{.status.capacity.pods}/{.status.allocatable.cpu}",
    );
    assert!(cap.starts_with("110/"), "{cap}");
    assert_eq!(
        c.get(
            &["node", &c.node],
            "{.status.addresses[?(@.type==\"InternalIP\")].address}"
        ),
        "127.0.0.1"
    );
    assert_eq!(
        c.get(
            &["node", &c.node],
            "{.status.daemonEndpoints.kubeletEndpoint.Port}"
        ),
        c.kubelet_port.to_string()
    );
    let info = c.get(
        &["node", &c.node],
        "{.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}",
    );
    assert!(
        info.starts_with("v1.33.") && info.contains("rkube://"),
        "{info}"
    );
    assert_eq!(
        c.get(
            &["lease", "-n", "kube-node-lease", &c.node],
            "{.spec.holderIdentity}"
        ),
        c.node
    );

    // kubectl run: Running, output in the CRI log.
    let overrides = format!("{{\"spec\":{{\"nodeName\":\"{}\"}}}}", c.node);
    c.ok(&[
        "run",
        "hello",
        "--image",
        IMAGE,
        "--overrides",
        &overrides,
        "--",
        "sh",
        "-c",
        "echo hello from $(hostname); sleep 3600",
    ]);
    c.wait_running("hello");
    assert!(eventually(Duration::from_secs(10), || c
        .log_lines("hello", "hello", 0)
        .contains(&"hello from hello".to_string())));
    let st = c.get(
        &["pod", "hello"],
        "{.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount} {.status.qosClass} {.status.hostIP}",
    );
    assert_eq!(st, "true 0 BestEffort 127.0.0.1");
    let id = c.get(
        &["pod", "hello"],
        "{.status.containerStatuses[0].containerID}",
    );
    assert!(id.starts_with("rkube://"), "{id}");
    let image_id = c.get(&["pod", "hello"], "{.status.containerStatuses[0].imageID}");
    assert!(image_id.contains("@sha256:"), "{image_id}");
    let table = c.ok(&["get", "pod", "hello"]);
    assert!(
        table.contains("1/1") && table.contains("Running"),
        "{table}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hello",
    ]);
    for reason in ["Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "{reason} missing:\n{events}");
    }

    // Init containers in order, env, and configMap/secret/downwardAPI files.
    c.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal",
        "color=blue",
        "--from-literal",
        "size=L",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal",
        "password=s3cret",
    ]);
    c.apply(&pod_yaml(
        "full",
        &c.node,
        r#"  initContainers:
  - name: first
    image: example.com/test/busybox:1
    command: ["sh", "-c", "echo first >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: example.com/test/busybox:1
    command: ["sh", "-c", "echo second >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: example.com/test/busybox:1
    command: ["sh", "-c", "cat /work/order; echo COLOR=$COLOR; echo PW=$PW; echo NODE=$NODE; echo NS=$MY_NS; echo MEM=$MEM; echo X=$X; cat /cfg/color; echo; cat /sec/password; echo; cat /info/labels; echo; cat /info/name; echo; sleep 3600"]
    env:
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: cfg, key: color}}}
    - {name: PW, valueFrom: {secretKeyRef: {name: sec, key: password}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: MY_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: X, value: "$(COLOR)-x"}
    resources: {limits: {memory: 64Mi, cpu: 200m}}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: info, mountPath: /info}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
"#,
    ));
    c.wait_running("full");
    let want = [
        "first",
        "second",
        "COLOR=blue",
        "PW=s3cret",
        "NODE=kubelet-basic",
        "NS=default",
        "MEM=64",
        "X=blue-x",
        "blue",
        "s3cret",
        "full",
    ];
    let mut lines = Vec::new();
    let ok = eventually(Duration::from_secs(10), || {
        lines = c.log_lines("full", "main", 0);
        want.iter().all(|w| lines.contains(&w.to_string()))
    });
    assert!(ok, "log lines {lines:?}");
    let pos = |w: &str| lines.iter().position(|l| l == w).unwrap();
    assert!(pos("first") < pos("second"));
    let init = c.get(
        &["pod", "full"],
        "{.status.initContainerStatuses[*].state.terminated.reason}",
    );
    assert_eq!(init, "Completed Completed");
    // Init containers without limits make it Burstable, as upstream.
    assert_eq!(c.get(&["pod", "full"], "{.status.qosClass}"), "Burstable");

    // A configMap change reaches the mounted file.
    c.ok(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        "{\"data\":{\"color\":\"red\"}}",
    ]);
    let ok = eventually(Duration::from_secs(40), || {
        let out = c
            .server
            .kubectl(&["exec", "full", "--", "cat", "/cfg/color"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "red"
    }) || {
        // Without the kubelet API (exec), look at the volume on the node.
        let uid = c.get(&["pod", "full"], "{.metadata.uid}");
        let f = c.data.join(format!(
            "agent/pods/{uid}/volumes/kubernetes.io~configmap/cfg/color"
        ));
        eventually(Duration::from_secs(40), || {
            std::fs::read_to_string(&f).unwrap_or_default() == "red"
        })
    };
    assert!(ok, "configMap update did not reach the volume");

    // kubectl delete: `sh` as PID 1 ignores SIGTERM, so the container
    // dies by SIGKILL when the grace period ends, and the pod is gone
    // right after; its containers are removed.
    let t = Instant::now();
    c.ok(&[
        "delete",
        "pod",
        "hello",
        "--grace-period=3",
        "--wait=true",
        "--timeout=60s",
    ]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(15),
        "delete took {took:?}"
    );
    let ps = c.runtime_ps();
    assert!(!ps.contains(" hello "), "{ps}");
}

#[test]
fn probes_restarts_and_oom() {
    let c = LocalNode::start("kubelet-probes");
    c.apply(&pod_yaml(
        "live",
        &c.node,
        r#"  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: example.com/test/busybox:1
    command: ["sh", "-c", "echo started; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    ));
    c.apply(&pod_yaml(
        "ready",
        &c.node,
        r#"  containers:
  - name: c
    image: example.com/test/busybox:1
    command: ["sh", "-c", "sleep 3600"]
    readinessProbe:
      exec: {command: ["cat", "/tmp/ready"]}
      periodSeconds: 1
"#,
    ));
    c.apply(&pod_yaml(
        "hog",
        &c.node,
        r#"  restartPolicy: Never
  containers:
  - name: c
    image: example.com/test/busybox:1
    command: ["sh", "-c", "x=a; while true; do x=$x$x; done"]
    resources: {limits: {memory: 32Mi}}
"#,
    ));
    c.apply(&pod_yaml(
        "done",
        &c.node,
        r#"  restartPolicy: Never
  containers:
  - name: c
    image: example.com/test/busybox:1
    command: ["sh", "-c", "exit 3"]
"#,
    ));

    // hostPath, subPath, readOnly, tmpfs emptyDir with sizeLimit and the
    // projected service account token.
    let host_dir = c.server.dir.path().join("hostdir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("f"), "from-host").unwrap();
    c.ok(&[
        "create",
        "configmap",
        "cfg2",
        "--from-literal",
        "color=green",
    ]);
    c.apply(&pod_yaml(
        "vols",
        &c.node,
        &format!(
            r#"  containers:
  - name: c
    image: {IMAGE}
    command: ["sh", "-c", "echo hp=$(cat /hp/f); echo sub=$(cat /one); echo mem=$(df -k /mem | tail -1 | awk '{{print $2}}'); echo mem2=$(df -k /mem2 | tail -1 | awk '{{print $2}}'); touch /cfg/x 2>/dev/null && echo ro=no || echo ro=yes; echo made > /hp/new; test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token=yes; echo ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace); sleep 3600"]
    volumeMounts:
    - {{name: hp, mountPath: /hp}}
    - {{name: cfg, mountPath: /one, subPath: color}}
    - {{name: cfg, mountPath: /cfg}}
    - {{name: mem, mountPath: /mem}}
    - {{name: mem2, mountPath: /mem2}}
    # Caps the sizeLimit-less Memory emptyDir below.
    resources: {{limits: {{memory: 48Mi}}}}
  volumes:
  - {{name: hp, hostPath: {{path: {}, type: Directory}}}}
  - {{name: cfg, configMap: {{name: cfg2}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
  - {{name: mem2, emptyDir: {{medium: Memory}}}}
"#,
            host_dir.display()
        ),
    ));
    // Readiness gates Ready until the file exists.
    c.wait_running("ready");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.get(&["pod", "ready"], "{.status.containerStatuses[0].ready}"),
        "false"
    );
    assert!(c.ok(&["get", "pod", "ready"]).contains("0/1"));
    let exec = c
        .server
        .kubectl(&["exec", "ready", "--", "touch", "/tmp/ready"]);
    if !exec.status.success() {
        // No kubelet API yet: enter the container through the runtime.
        let ps = c.runtime_ps();
        let line = ps
            .lines()
            .find(|l| l.contains(" c ") || l.contains("\tc\t"))
            .unwrap_or_default();
        let _ = line;
        let ids: Vec<String> = ps
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        for id in ids {
            let _ = c.ctr(&[
                "exec",
                &id,
                "sh",
                "-c",
                "test \"$(hostname)\" = ready && touch /tmp/ready",
            ]);
        }
    }
    c.wait_within(
        &["pod", "ready"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        Duration::from_secs(20),
        |s| s == "True",
    );

    c.wait_running("vols");
    let want = [
        "hp=from-host",
        "sub=green",
        "mem=8192",
        // No sizeLimit: the pod's memory limit, not the node's memory.
        "mem2=49152",
        "ro=yes",
        "token=yes",
        "ns=default",
    ];
    let mut lines = Vec::new();
    let ok = eventually(Duration::from_secs(10), || {
        lines = c.log_lines("vols", "c", 0);
        want.iter().all(|w| lines.contains(&w.to_string()))
    });
    assert!(ok, "{lines:?}");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("new")).unwrap(),
        "made\n"
    );

    // The OOM kill and a failed run-to-completion pod.
    c.wait_within(
        &["pod", "hog"],
        "{.status.containerStatuses[0].state.terminated.reason}",
        Duration::from_secs(60),
        |r| r == "OOMKilled",
    );
    assert_eq!(c.get(&["pod", "hog"], "{.status.phase}"), "Failed");
    c.wait_within(
        &["pod", "done"],
        "{.status.phase}",
        Duration::from_secs(30),
        |p| p == "Failed",
    );
    assert_eq!(
        c.get(
            &["pod", "done"],
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "3"
    );

    // Liveness: restarts, then CrashLoopBackOff as kubectl shows it.
    c.wait_within(
        &["pod", "live"],
        "{.status.containerStatuses[0].restartCount}",
        Duration::from_secs(60),
        |n| n.parse::<u32>().unwrap_or(0) >= 2,
    );
    let ok = eventually(Duration::from_secs(30), || {
        c.ok(&["get", "pod", "live"]).contains("CrashLoopBackOff")
    });
    assert!(ok, "{}", c.ok(&["get", "pod", "live", "-o", "yaml"]));
    let table = c.ok(&["get", "pod", "live"]);
    let restarts: u32 = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(restarts >= 2, "{table}");
    let last = c.get(
        &["pod", "live"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "137");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=live",
    ]);
    assert!(
        events.contains("Unhealthy") && events.contains("BackOff"),
        "{events}"
    );
}

#[test]
fn agent_restart_readopts_running_containers() {
    let mut c = LocalNode::start("kubelet-restart");
    c.apply(&pod_yaml(
        "keep",
        &c.node,
        r#"  containers:
  - name: c
    image: example.com/test/busybox:1
    command: ["sh", "-c", "echo up; sleep 3600"]
"#,
    ));
    c.wait_running("keep");
    let before = c.get(
        &["pod", "keep"],
        "{.status.containerStatuses[0].containerID}",
    );
    c.kill_agent();
    c.start_agent();
    // The restarted agent settles the pod again without a new container.
    std::thread::sleep(Duration::from_secs(3));
    c.wait_node_ready();
    c.wait_running("keep");
    let after = c.get(
        &["pod", "keep"],
        "{.status.containerStatuses[0].containerID}",
    );
    assert_eq!(before, after);
    assert_eq!(
        c.get(
            &["pod", "keep"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(c.log_lines("keep", "c", 0), ["up"]);
    // And deletion still works through the new agent.
    c.ok(&["delete", "pod", "keep", "--timeout=60s"]);
    assert!(!c
        .runtime_ps()
        .contains(&after.trim_start_matches("rkube://")[..12]));
}

#[test]
fn agent_joins_with_the_server_token() {
    let server = Server::start();
    let token = std::fs::read_to_string(server.dir.path().join("server/token")).unwrap();
    let token = token.trim();
    assert!(token.starts_with("K10"), "{token}");
    let url = format!("https://127.0.0.1:{}", server.port);
    let agent = |data: &Path, node: &str, token: &str| {
        Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("agent")
            .args(["--server", &url, "--token", token])
            .arg("--data-dir")
            .arg(data)
            .args(["--node-name", node, "--node-ip", "127.0.0.1"])
            .args(["--kubelet-port", &free_port().to_string()])
            .args([
                "--registries",
                "/nonexistent",
                "--cgroup-parent",
                "rkube-test/join",
                "--network-backend",
                "none",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // A wrong secret is refused with a clear error.
    let bad = format!(
        "{}::server:{}",
        token.split("::").next().unwrap(),
        "0".repeat(32)
    );
    let out = agent(&server.dir.path().join("bad"), "kubelet-bad", &bad)
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid join token"), "{err}");
    // A token for another CA is refused before anything is sent.
    let other = format!("K10{}::server:{}", "ab".repeat(32), "0".repeat(32));
    let out = agent(&server.dir.path().join("other"), "kubelet-other", &other)
        .wait_with_output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));

    let data = server.dir.path().join("joined");
    let mut child = agent(&data, "kubelet-joined", token);
    let ok = eventually(Duration::from_secs(60), || {
        let out = server.kubectl(&[
            "get",
            "node",
            "kubelet-joined",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        String::from_utf8_lossy(&out.stdout) == "True"
    });
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        ok,
        "joined node not Ready:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The agent kept its own credentials: a client certificate for
    // system:node:<name> and the kubelet API's serving certificate.
    let kc = std::fs::read_to_string(data.join("agent/kubelet.kubeconfig")).unwrap();
    assert!(kc.contains(&url), "{kc}");
    assert!(data.join("agent/tls/serving-kubelet.crt").exists());
    let lease = server.ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "kubelet-joined",
        "-o",
        "name",
    ]);
    assert_eq!(lease.trim(), "lease.coordination.k8s.io/kubelet-joined");
}

#[test]
fn static_pods_and_a_deployment() {
    let c = LocalNode::start_with("kubelet-static", |data| {
        let dir = data.join("agent/pod-manifests");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("web.yaml"),
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: kube-system\nspec:\n  containers:\n  - name: c\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo static; sleep 3600\"]\n"
            ),
        )
        .unwrap();
    });
    // The static pod runs and its mirror pod shows it.
    let mirror = "web-kubelet-static";
    let ok = eventually(Duration::from_secs(60), || {
        c.get(&["pod", "-n", "kube-system", mirror], "{.status.phase}") == "Running"
    });
    assert!(
        ok,
        "{}\n{}",
        c.ok(&["get", "pods", "-A", "-o", "wide"]),
        c.agent_logs()
    );
    let ann = c.get(
        &["pod", "-n", "kube-system", mirror],
        "{.metadata.annotations.kubernetes\\.io/config\\.mirror}",
    );
    assert_eq!(ann.len(), 32, "{ann}");
    assert_eq!(
        c.get(
            &["pod", "-n", "kube-system", mirror],
            "{.metadata.ownerReferences[0].kind}"
        ),
        "Node"
    );
    // Deleting the mirror pod does not stop the static pod.
    let ids = || -> Vec<String> {
        c.runtime_ps()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let before = ids();
    assert_eq!(before.len(), 1, "{before:?}");
    c.ok(&["delete", "pod", "-n", "kube-system", mirror, "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ids(), before);

    // A Deployment of 3 replicas, scheduled onto the node, runs 3 real
    // containers.
    c.ok(&[
        "create",
        "deployment",
        "app",
        "--image",
        IMAGE,
        "--replicas",
        "3",
        "--",
        "sh",
        "-c",
        "sleep 3600",
    ]);
    let ok = eventually(Duration::from_secs(90), || {
        c.get(&["deployment", "app"], "{.status.readyReplicas}") == "3"
    });
    assert!(
        ok,
        "{}\n{}",
        c.ok(&["get", "pods", "-o", "wide"]),
        c.agent_logs()
    );
    // The static pod's container and the three replicas.
    let ps = c.runtime_ps();
    let up = ps.lines().filter(|l| l.contains(" Up ")).count();
    assert_eq!(up, 4, "{ps}");
}

/// `curl -sk` against the kubelet API; returns (HTTP code, body).
fn curl_kubelet(port: u16, path: &str, token: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--max-time", "30", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
fn kubelet_api_delegates_authn_and_authz_to_the_api_server() {
    let c = LocalNode::start("kubelet-authz");
    // Anonymous: 401, as upstream with anonymous auth off.
    let (code, body) = curl_kubelet(c.kubelet_port, "/pods", None);
    assert_eq!((code.as_str(), body.as_str()), ("401", "Unauthorized"));
    let (code, _) = curl_kubelet(c.kubelet_port, "/pods", Some("not-a-token"));
    assert_eq!(code, "401");
    // A service account token is checked with a TokenReview, the request
    // with a SubjectAccessReview.
    let token = c.ok(&["create", "token", "default"]);
    let (code, body) = curl_kubelet(c.kubelet_port, "/pods", Some(token.trim()));
    assert_eq!(code, "200", "{body}\n{}", c.agent_logs());
    assert!(body.contains("\"kind\":\"PodList\""), "{body}");
    let (code, body) = curl_kubelet(c.kubelet_port, "/stats/summary", Some(token.trim()));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"nodeName\":\"kubelet-authz\""), "{body}");

    // The reviews as kubectl sees them.
    let tr = c.server.ok_stdin(
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.authenticated} {.status.user.username}",
        ],
        &format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nmetadata: {{}}\nspec:\n  token: {}\n",
            token.trim()
        ),
    );
    assert_eq!(tr, "true system:serviceaccount:default:default");
    let tr = c.server.ok_stdin(
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.authenticated}|{.status.error}",
        ],
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nmetadata: {}\nspec:\n  token: nope\n",
    );
    assert_eq!(tr, "|invalid bearer token");
    let sar = |groups: &str| {
        c.server.ok_stdin(
            &["create", "-f", "-", "-o", "jsonpath={.status.allowed}"],
            &format!(
                "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nmetadata: {{}}\nspec:\n  user: system:node:x\n  groups: {groups}\n  resourceAttributes:\n    verb: get\n    resource: nodes\n    subresource: proxy\n    name: kubelet-authz\n"
            ),
        )
    };
    assert_eq!(sar("[system:authenticated]"), "true");
    assert_eq!(sar("[system:unauthenticated]"), "false");
    let out = c.server.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nmetadata: {}\nspec:\n  user: bob\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.resourceAttributes: Invalid value")
            && err.contains(
                "exactly one of nonResourceAttributes or resourceAttributes must be specified"
            ),
        "{err}"
    );

    // The API server's own client certificate still passes (logs go
    // through /containerLogs, authorized as nodes/proxy).
    c.apply(&pod_yaml(
        "authz-logs",
        &c.node,
        &format!("  containers:\n  - name: c\n    image: {IMAGE}\n    command: [sh, -c, 'echo hello-authz; sleep 3600']\n"),
    ));
    c.wait_running("authz-logs");
    let ok = eventually(Duration::from_secs(30), || {
        String::from_utf8_lossy(&c.server.kubectl(&["logs", "authz-logs"]).stdout)
            .contains("hello-authz")
    });
    assert!(ok, "{}", c.agent_logs());
}

#[test]
fn fs_group_owns_volumes_and_joins_the_groups() {
    let c = LocalNode::start("kubelet-fsgroup");
    c.ok(&["create", "configmap", "fsg", "--from-literal=key=value"]);
    c.apply(&pod_yaml(
        "fsg",
        &c.node,
        &format!(
            "  securityContext:\n    fsGroup: 2345\n  containers:\n  - name: c\n    image: {IMAGE}\n    command: [sh, -c, 'touch /data/new; sleep 3600']\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n    - {{name: cm, mountPath: /cm}}\n  volumes:\n  - {{name: data, emptyDir: {{}}}}\n  - {{name: cm, configMap: {{name: fsg}}}}\n"
        ),
    ));
    c.wait_running("fsg");
    let exec = |cmd: &str| c.ok(&["exec", "fsg", "--", "sh", "-c", cmd]);
    // emptyDir: group and setgid directory (0777 | 02000 as upstream);
    // files created inside inherit the group.
    assert_eq!(exec("stat -c '%g %a' /data").trim(), "2345 2777");
    let ok = eventually(Duration::from_secs(30), || {
        exec("stat -c %g /data/new 2>/dev/null || true").trim() == "2345"
    });
    assert!(ok, "{}", exec("ls -ln /data"));
    // configMap: read-only mask, group on the files.
    assert_eq!(exec("stat -L -c '%g %a' /cm/key").trim(), "2345 644");
    // The container's processes carry the group.
    let groups = exec("id -G");
    assert!(groups.split_whitespace().any(|g| g == "2345"), "{groups}");
}
