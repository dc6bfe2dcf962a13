//! A multi-node cluster on one machine for behaviour tests: a bridge in
//! the root namespace (the "LAN"), the server on the bridge's address,
//! and each agent in its own network namespace with a veth on the bridge
//! and its own cgroup parent and data dir; the kubelet API (exec, logs)
//! trusts the server's client CA. Everything is removed on drop. Needs
//! root, iproute2 and busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{eventually, Server};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `ip <args>`, which must succeed.
pub fn ip(args: &[&str]) {
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
        let third = free_subnet(16 + (tag % 200));
        let bridge = format!("rkt{tag:x}");
        // A leftover of a crashed run of the same tag.
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{third}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        // On the bridge's address, so agents in their namespaces reach it.
        let server = Server::start_at(tempfile::tempdir().unwrap(), &format!("{third}.1"), &[]);
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
        let client_ca = self.server.dir.path().join("server/tls/client-ca.crt");
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
            // The kubelet API (exec, logs), trusting the server's client CA.
            .arg("--client-ca-file")
            .arg(&client_ca)
            // These shared machines run with little free disk; DiskPressure
            // would taint the node and keep the scheduler away.
            .args(["--eviction-hard", "nodefs.available<1%"])
            // Nor may image garbage collection take the test images.
            .args(["--image-gc-high-threshold", "100"])
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

/// `192.168.N` with N from `first` on whose /24 no route uses yet (a
/// leftover bridge of a crashed run, another test's cluster): two bridges
/// on one subnet would leave the server unreachable.
fn free_subnet(first: u32) -> String {
    for i in 0..200 {
        let third = format!("192.168.{}", 16 + (first - 16 + i) % 200);
        let out = Command::new("ip")
            .args(["route", "show", &format!("{third}.0/24")])
            .output()
            .expect("run ip");
        if out.stdout.is_empty() {
            return third;
        }
    }
    panic!("no free 192.168.N.0/24 for a test cluster");
}

/// Kills what still runs in cgroup `parent` (relative to every mounted
/// hierarchy) and removes its directories, deepest first.
pub fn remove_cgroups(parent: &str) {
    let mut dirs = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        collect_dirs(&h.path().join(parent), &mut dirs);
    }
    for _ in 0..50 {
        let mut any = false;
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter(|l| !l.trim().is_empty()) {
                any = true;
                // It may have exited meanwhile.
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).output();
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    out.push(dir.to_path_buf());
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&e.path(), out);
        }
    }
}

/// Lazily unmounts everything under `dir` (the sandboxes' pinned
/// namespaces), so the temp dir can be removed.
pub fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_agent(i);
        }
        // The pods' containers outlive their agents (by design, for agent
        // restarts): end them, then free their pinned namespaces.
        for i in 0..self.nodes.len() {
            remove_cgroups(&format!("{}n{i}", self.cgroup));
        }
        unmount_under(self.server.dir.path());
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
