//! A multi-node cluster on one machine for behaviour tests: a bridge in
//! the root namespace (the "LAN"), the server on the bridge's address,
//! and each agent in its own network namespace with a veth on the bridge
//! and its own kubelet port, cgroup parent and data dir. Everything is
//! removed on drop. Needs root, iproute2 and busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{eventually, Server};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One agent in its own network namespace.
pub struct Node {
    pub name: String,
    pub netns: String,
    pub ip: String,
    pub data: PathBuf,
    agent: Option<Child>,
    log_seq: u32,
}

pub struct Cluster {
    pub server: Server,
    pub nodes: Vec<Node>,
    bridge: String,
    backend: String,
    cgroup: String,
}

impl Cluster {
    /// A server and `n` agents with `--network-backend backend`;
    /// `prepare` may drop files (images) into each agent's data dir.
    pub fn start(n: usize, backend: &str, prepare: impl Fn(&Path)) -> Cluster {
        // A /24 per cluster, apart from other concurrent test runs.
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = std::process::id() % 4000 * 16 + seq;
        let subnet = 16 + (tag % 200);
        let third = format!("192.168.{subnet}");
        let bridge = format!("rkt{tag:x}");
        // A leftover of a crashed run of the same tag.
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{third}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        let server = start_server(&format!("{third}.1"));
        let mut c = Cluster {
            server,
            nodes: Vec::new(),
            bridge: bridge.clone(),
            backend: backend.to_string(),
            cgroup: format!("rkube-test/net{tag:x}"),
        };
        for i in 0..n {
            let netns = format!("rkt{tag:x}-n{i}");
            let _ = Command::new("ip").args(["netns", "del", &netns]).output();
            ip(&["netns", "add", &netns]);
            let host = format!("rkt{tag:x}n{i}");
            ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ]);
            ip(&["link", "set", &host, "master", &bridge, "up"]);
            let addr = format!("{third}.{}", 10 + i);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &netns, "link", "set", "eth0", "up"]);
            let data = c.server.dir.path().join(format!("node-{i}"));
            prepare(&data);
            c.nodes.push(Node {
                name: format!("node-{i}"),
                netns,
                ip: addr,
                data,
                agent: None,
                log_seq: 0,
            });
        }
        for i in 0..n {
            c.start_agent(i);
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    pub fn start_agent(&mut self, i: usize) {
        let kubeconfig = self.server.kubeconfig.clone();
        let cgroup = format!("{}n{i}", self.cgroup);
        let backend = self.backend.clone();
        let node = &mut self.nodes[i];
        node.log_seq += 1;
        let log = node.data.with_extension(format!("{}.log", node.log_seq));
        // nsenter, not `ip netns exec`: the latter remounts /sys, which
        // hides the cgroup hierarchies the runtime needs.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", node.netns))
            .arg(env!("CARGO_BIN_EXE_rkube"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(&node.data)
            .args(["--node-name", &node.name, "--node-ip", &node.ip])
            .args(["--cgroup-parent", &cgroup])
            .args(["--registries", "/nonexistent"])
            .args(["--network-backend", &backend])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rkube agent");
        node.agent = Some(child);
    }

    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn wait_ready(&self, i: usize) {
        let name = &self.nodes[i].name;
        // Generous: agents start while other tests load the machine.
        let ok = eventually(Duration::from_secs(120), || {
            let out = self.server.kubectl(&[
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            String::from_utf8_lossy(&out.stdout) == "True"
        });
        assert!(ok, "{name} not Ready:\n{}", self.logs());
    }

    /// Every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            for s in 1..=n.log_seq {
                let p = n.data.with_extension(format!("{s}.log"));
                out.push_str(&format!("--- {}\n", p.display()));
                out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
            }
        }
        out
    }

    /// Each node's routes, VXLAN neighbours and forwarding entries, for
    /// failure messages.
    pub fn net_state(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&format!("--- {} ({})\n", n.name, n.ip));
            for cmd in [
                &["ip", "route"][..],
                &["ip", "neigh"],
                &["bridge", "fdb", "show", "dev", "rkube.1"],
                &["ip", "-br", "addr"],
            ] {
                let o = self.exec_in(i, cmd);
                out.push_str(&String::from_utf8_lossy(&o.stdout));
                out.push_str(&String::from_utf8_lossy(&o.stderr));
            }
            let find = Command::new("find")
                .arg(n.data.join("agent/containers"))
                .args(["-path", "*ns/net"])
                .output()
                .unwrap();
            for ns in String::from_utf8_lossy(&find.stdout).lines() {
                let o = Command::new("nsenter")
                    .arg(format!("--net={ns}"))
                    .args(["sh", "-c", "ip -br addr; ip route"])
                    .output()
                    .unwrap();
                out.push_str(&format!("pod ns {ns}:\n"));
                out.push_str(&String::from_utf8_lossy(&o.stdout));
                out.push_str(&String::from_utf8_lossy(&o.stderr));
            }
        }
        out
    }

    /// Runs a command in node `i`'s namespace; returns stdout.
    pub fn exec_in(&self, i: usize, cmd: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.nodes[i].netns])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }
}

/// `rkube server` (agent-free) listening on the bridge's address, so
/// agents in their namespaces reach it.
fn start_server(addr: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = super::free_port();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let log = std::fs::File::create(dir.path().join(format!("server-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--bind-address",
            addr,
            "--https-listen-port",
            &port.to_string(),
        ])
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .arg("--disable-agent")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start rkube server");
    let mut server = Server {
        child,
        dir,
        port,
        kubeconfig,
    };
    server.wait_ready();
    server
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_agent(i);
        }
        for n in &self.nodes {
            // Deleting the namespace takes its veths (and the pods' host
            // ends) with it.
            let _ = Command::new("ip").args(["netns", "del", &n.netns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}
