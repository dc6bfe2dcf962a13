//! CNI mode (issue 7) with Debian's real CNI plugins (bridge, host-local,
//! portmap from /usr/lib/cni), as root: an agent in a network namespace
//! the test makes, `--network-backend cni` with a conflist in the test's
//! temp dir. The node is NotReady (NetworkPluginNotReady) until the
//! conflist appears. Pods get addresses from host-local, reach each other
//! over the plugin's bridge, keep them across an agent restart without a
//! second ADD (the re-adoption runs CHECK; a pod whose interface lost its
//! address fails it and is attached afresh), release them on deletion
//! (DEL), and a broken network config shows as a pod event. Also: the
//! agent's default pod network (vxlan) refuses clearly to run without
//! root.
//! All traffic stays inside namespaces the test (or its pods) made.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::cluster::ip;
use support::images::{write_busybox, BUSYBOX as IMAGE};
use support::{eventually, free_port, kubectl_bin};

const NETWORK: &str = "rkt-cni";
const NODE: &str = "cni-node";
/// Agents start and pods run while other tests load the machine.
const WAIT: Duration = Duration::from_secs(120);

/// A server in the root namespace on one end of a veth pair, and one
/// agent in a namespace of its own on the other end, in CNI mode.
struct Node {
    dir: tempfile::TempDir,
    server: Child,
    agent: Option<Child>,
    kubeconfig: PathBuf,
    netns: String,
    veth: String,
    node_ip: String,
    /// The pods' /24 (host-local's range).
    subnet: String,
    agent_runs: u32,
    tag: u32,
}

impl Node {
    fn start() -> Node {
        let tag = std::process::id() % 250;
        let dir = tempfile::tempdir().unwrap();
        let (netns, veth) = (format!("rkcni{tag}"), format!("rkcni{tag}h"));
        // Leftovers of a crashed run with the same tag.
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        let (server_ip, node_ip) = (format!("10.199.{tag}.1"), format!("10.199.{tag}.2"));
        ip(&["addr", "add", &format!("{server_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{node_ip}/30"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);

        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let server = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--bind-address", &server_ip])
            .args(["--https-listen-port", &port.to_string()])
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .arg("--disable-agent")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .expect("start rkube server");
        let subnet = format!("10.244.{tag}");
        let mut node = Node {
            dir,
            server,
            agent: None,
            kubeconfig,
            netns,
            veth,
            node_ip,
            subnet,
            agent_runs: 0,
            tag,
        };
        let ready = eventually(WAIT, || {
            node.kubeconfig.exists() && node.kubectl(&["get", "--raw", "/readyz"]).status.success()
        });
        assert!(ready, "server not ready:\n{}", node.logs());
        // The agent starts before its network config exists (see the
        // test); the directory is there, empty.
        std::fs::create_dir_all(node.conf_dir()).unwrap();
        write_busybox(&node.data());
        node.start_agent();
        node
    }

    /// The Node's Ready condition as `status|reason|message`.
    fn ready_condition(&self) -> String {
        self.get(
            &["node", NODE],
            "{.status.conditions[?(@.type==\"Ready\")].status}|\
             {.status.conditions[?(@.type==\"Ready\")].reason}|\
             {.status.conditions[?(@.type==\"Ready\")].message}",
        )
    }

    /// The log of the agent's current run.
    fn agent_log(&self) -> String {
        let p = self
            .dir
            .path()
            .join(format!("agent-{}.log", self.agent_runs));
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// The network namespace the attachment cache records for pod `uid`.
    fn cached_netns(&self, uid: &str) -> String {
        let p = self.data().join(format!("agent/cni/{uid}.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["netns"].as_str().unwrap().to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// host-local's store of the network: a file per address.
    fn ipam_store(&self) -> PathBuf {
        self.dir.path().join("ipam").join(NETWORK)
    }

    /// bridge (with host-local) chained with portmap, which passes the
    /// bridge's result on (prevResult) when no ports are mapped.
    fn conflist(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": format!("rkcni{}b", self.tag),
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("{}.0/24", self.subnet)}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.dir.path().join("ipam"),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
        .to_string()
    }

    fn start_agent(&mut self) {
        self.agent_runs += 1;
        let log = self
            .dir
            .path()
            .join(format!("agent-{}.log", self.agent_runs));
        // nsenter, not `ip netns exec`, which remounts /sys and hides the
        // cgroup hierarchies the runtime needs.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_rkube"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--data-dir")
            .arg(self.data())
            .args(["--node-name", NODE, "--node-ip", &self.node_ip])
            .args(["--cgroup-parent", &format!("rkube-test/cni{}", self.tag)])
            .args(["--registries", "/nonexistent"])
            .args(["--eviction-hard", "nodefs.available<1%"])
            .args(["--image-gc-high-threshold", "100"])
            .args(["--network-backend", "cni"])
            // The first directory does not exist: the list is searched.
            .args([
                "--cni-bin-dir",
                "/nonexistent/cni,/opt/cni/bin,/usr/lib/cni",
            ])
            .arg("--cni-conf-dir")
            .arg(self.conf_dir())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rkube agent");
        self.agent = Some(child);
    }

    fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_ready(&self) {
        let ok = eventually(WAIT, || {
            self.get(
                &["node", NODE],
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            ) == "True"
        });
        assert!(ok, "node not Ready:\n{}", self.logs());
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_bin("kubectl", &self.kubeconfig, args, None)
    }

    fn apply(&self, yaml: &str) {
        let out = kubectl_bin(
            "kubectl",
            &self.kubeconfig,
            &["apply", "-f", "-"],
            Some(yaml),
        );
        support::check(out, &["apply"]);
    }

    fn get(&self, what: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let jp = format!("jsonpath={path}");
        args.extend(["-o", &jp]);
        String::from_utf8_lossy(&self.kubectl(&args).stdout).into_owned()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            // The tail: the start-up lines rarely explain a failure.
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            out.push_str(&format!("--- {}\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The addresses host-local holds and, for each, what it holds it for.
    fn held(&self) -> Vec<(String, String)> {
        let Ok(rd) = std::fs::read_dir(self.ipam_store()) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok()
            })
            .map(|e| {
                let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), owner)
            })
            .collect()
    }

    fn pod_ip(&self, pod: &str) -> String {
        let mut ip = String::new();
        let ok = eventually(WAIT, || {
            let phase = self.get(&["pod", pod], "{.status.phase}");
            ip = self.get(&["pod", pod], "{.status.podIP}");
            phase == "Running" && !ip.is_empty()
        });
        assert!(ok, "{pod} not Running with an IP:\n{}", self.logs());
        ip
    }

    fn wait_succeeded(&self, pod: &str) {
        let ok = eventually(WAIT, || {
            self.get(&["pod", pod], "{.status.phase}") == "Succeeded"
        });
        assert!(
            ok,
            "{pod} did not succeed: {}\n{}",
            self.get(&["pod", pod], "{.status}"),
            self.logs()
        );
    }

    fn events(&self, pod: &str) -> String {
        let sel = format!("involvedObject.name={pod}");
        self.get(
            &["events", "--field-selector", &sel],
            "{range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_agent();
        let _ = self.server.kill();
        let _ = self.server.wait();
        // The pods' containers outlive their agent (by design, for agent
        // restarts): end them and free their pinned namespaces.
        support::cluster::remove_cgroups(&format!("rkube-test/cni{}", self.tag));
        support::cluster::unmount_under(self.dir.path());
        // The namespace takes the plugin's bridge and the pods' veths.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

fn web(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello-{name} > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
"#
    )
}

/// A pod asking `target`:8080 over HTTP (busybox nc) until the answer
/// has `want`; exits 0 then.
fn client(name: &str, target: &str, want: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: fetch
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "for i in $(seq 90); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} 8080 | grep -q {want} && exit 0; sleep 1; done; exit 1"]
"#
    )
}

#[test]
fn cni_plugins_attach_pods_keep_them_across_restarts_and_release_on_delete() {
    let mut node = Node::start();
    // No CNI config yet: the node registers NotReady with the runtime's
    // NetworkReady message, as a kubelet on containerd does ...
    let want = "False|KubeletNotReady|container runtime network not ready: NetworkReady=false \
                reason:NetworkPluginNotReady message:Network plugin returns error: \
                cni plugin not initialized";
    let mut last = String::new();
    let ok = eventually(WAIT, || {
        last = node.ready_condition();
        last == want
    });
    assert!(ok, "Ready condition {last:?}\n{}", node.logs());
    // ... and turns Ready once a config appears (without a restart).
    std::fs::write(node.conf_dir().join("10-rkt.conflist"), node.conflist()).unwrap();
    node.wait_ready();
    assert!(
        node.ready_condition().starts_with("True|KubeletReady|"),
        "{}",
        node.ready_condition()
    );

    // Pods' routes are the plugins' business, but Service addresses
    // still never leave the node.
    let routes = Command::new("ip")
        .args(["-n", &node.netns, "route"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    assert!(routes.contains("unreachable 10.43.0.0/16"), "{routes}");

    // ADD: the address comes from host-local's range, held for the pod.
    node.apply(&web("web"));
    let web_ip = node.pod_ip("web");
    let uid = node.get(&["pod", "web"], "{.metadata.uid}");
    assert!(
        web_ip.starts_with(&format!("{}.", node.subnet)),
        "{web_ip} not in {}.0/24",
        node.subnet
    );
    let held = node.held();
    let mine: Vec<_> = held.iter().filter(|(_, o)| o.contains(&uid)).collect();
    assert_eq!(mine.len(), 1, "host-local store: {held:?}");
    assert_eq!(mine[0].0, web_ip, "status.podIP is the address ADD gave");

    // Another pod on the node reaches it over the plugin's bridge.
    node.apply(&client("fetch", &web_ip, "hello-web"));
    node.wait_succeeded("fetch");

    // An agent restart re-adopts the pod: same address, no second ADD
    // (host-local would hold a second address for the same pod).
    node.kill_agent();
    node.start_agent();
    node.wait_ready();
    node.apply(&client("fetch-again", &web_ip, "hello-web"));
    node.wait_succeeded("fetch-again");
    assert_eq!(node.get(&["pod", "web"], "{.status.podIP}"), web_ip);
    let held = node.held();
    assert_eq!(
        held.iter().filter(|(_, o)| o.contains(&uid)).count(),
        1,
        "host-local store after the restart: {held:?}\n{}",
        node.logs()
    );
    // Re-adopting it, the agent ran the plugins' CHECK (cniVersion 1.0.0,
    // with the cached result as prevResult), which passed.
    let checked = eventually(WAIT, || {
        node.agent_log()
            .lines()
            .any(|l| l.contains("cni: CHECK passed") && l.contains(&uid))
    });
    assert!(checked, "no CHECK of {uid}:\n{}", node.logs());
    assert!(!node.events("web").contains("PodNetworkCheckFailed"));

    // The pod's interface loses its address behind the agent's back: the
    // next re-adoption's CHECK fails (the bridge plugin misses the
    // address), says so in an event, and attaches the pod afresh.
    let netns = node.cached_netns(&uid);
    let flushed = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["ip", "addr", "flush", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(flushed.status.success(), "{flushed:?}");
    node.kill_agent();
    node.start_agent();
    node.wait_ready();
    let said = eventually(WAIT, || {
        let ev = node.events("web");
        ev.contains("PodNetworkCheckFailed: The pod network is not as it was set up (plugin type=\"bridge\" failed (CHECK)")
    });
    assert!(said, "events: {}\n{}", node.events("web"), node.logs());
    // Attached again: one address held for the pod, the one in its
    // status, and reachable.
    let mut web_ip = String::new();
    let ok = eventually(WAIT, || {
        let held = node.held();
        let mine: Vec<_> = held.iter().filter(|(_, o)| o.contains(&uid)).collect();
        web_ip = node.get(&["pod", "web"], "{.status.podIP}");
        mine.len() == 1 && mine[0].0 == web_ip
    });
    assert!(
        ok,
        "after the repair: status {web_ip:?}, held {:?}\n{}",
        node.held(),
        node.logs()
    );
    node.apply(&client("fetch-repaired", &web_ip, "hello-web"));
    node.wait_succeeded("fetch-repaired");

    // DEL on deletion: host-local releases the address, the attachment
    // cache entry goes.
    support::check(
        node.kubectl(&["delete", "pod", "web", "--wait=false"]),
        &["delete"],
    );
    let cache = node.data().join(format!("agent/cni/{uid}.json"));
    let released = eventually(WAIT, || {
        !node.held().iter().any(|(ip, _)| *ip == web_ip) && !cache.exists()
    });
    assert!(
        released,
        "{web_ip} still held: {:?}\n{}",
        node.held(),
        node.logs()
    );

    // A plugin that is not installed: the pod says so in its events.
    let broken = node.conf_dir().join("00-broken.conflist");
    std::fs::write(
        &broken,
        r#"{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"rkube-no-such-plugin"}]}"#,
    )
    .unwrap();
    node.apply(&web("lost"));
    let said = eventually(WAIT, || {
        node.events("lost")
            .contains("CNI plugin \"rkube-no-such-plugin\" not found in /nonexistent/cni:")
    });
    assert!(said, "events: {}", node.events("lost"));
    assert!(node.events("lost").contains("FailedCreatePodSandBox"));

    // A plugin's own CNI error object (the bridge refusing its config
    // before it touches anything) too.
    std::fs::write(
        &broken,
        r#"{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"bridge","mtu":"big"}]}"#,
    )
    .unwrap();
    node.apply(&web("lost-too"));
    let said = eventually(WAIT, || {
        node.events("lost-too")
            .contains("plugin type=\"bridge\" failed (ADD): code ")
    });
    assert!(said, "events: {}", node.events("lost-too"));
    // Fixing the config lets the waiting pod start.
    std::fs::remove_file(&broken).unwrap();
    let ip = node.pod_ip("lost-too");
    assert!(ip.starts_with(&format!("{}.", node.subnet)), "{ip}");
}

#[test]
fn the_default_pod_network_needs_root_and_says_so() {
    let rkube = env!("CARGO_BIN_EXE_rkube");
    // No --network-backend: the default, vxlan.
    let start = Instant::now();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", rkube])
        .args(["agent", "--kubeconfig", "/nonexistent/kubeconfig"])
        .args(["--data-dir", "/nonexistent/rkube"])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the vxlan pod network needs root"),
        "{stderr}"
    );
    assert!(stderr.contains("--network-backend none"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(60));

    let out = Command::new(rkube)
        .args(["agent", "--network-backend", "flannel"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("(vxlan, host-gw, cni, none)"), "{stderr}");

    let out = Command::new(rkube)
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--network-backend <vxlan|host-gw|cni|none>",
        "[default: vxlan]",
        "--cni-bin-dir <DIR[,DIR...]>",
        "[default: /opt/cni/bin,/usr/lib/cni]",
        "--cni-conf-dir <DIR>",
        "[default: /etc/cni/net.d]",
    ] {
        assert!(help.contains(want), "{want:?} not in:\n{help}");
    }
}
