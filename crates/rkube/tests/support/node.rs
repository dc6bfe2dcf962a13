//! One real node for behaviour tests, as root: the test's [`Server`]
//! (agent-free) and a real `rkube agent` beside it in the machine's own
//! network namespace, with its own node name, data dir, kubelet port and
//! cgroup parent, and the busybox image dropped where it imports archives
//! at start. The agent can be killed and started again (its containers
//! outlive it, as upstream's do the kubelet); on drop the agent, its
//! containers, cgroups and mounts go.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::cluster::{remove_cgroups, unmount_under};
use super::images::write_busybox;
use super::{eventually, free_port, Server};

/// How long a node and its pods get to come up on a loaded machine.
const READY: Duration = Duration::from_secs(90);

/// A server plus one real agent.
pub struct LocalNode {
    pub server: Server,
    pub node: String,
    /// The agent's `--data-dir`.
    pub data: PathBuf,
    /// The agent's cgroup parent below every hierarchy.
    pub cgroup_parent: String,
    /// Kept across agent restarts, so the node's endpoint stays right.
    pub kubelet_port: u16,
    /// The agent's `--registries` file (none by default: images come
    /// from the archives in its data dir).
    pub registries: PathBuf,
    /// The agent's `--eviction-hard`, read at each [`LocalNode::start_agent`].
    pub eviction_hard: String,
    /// The agent's `--image-gc-high-threshold` (100, off, by default: on a
    /// full disk, image garbage collection would take the test images).
    pub image_gc_high_threshold: String,
    /// More agent flags, passed at each [`LocalNode::start_agent`].
    pub agent_args: Vec<String>,
    agent: Option<Child>,
    starts: u32,
}

impl LocalNode {
    /// A server and a Ready node named `node` running busybox pods.
    pub fn start(node: &str) -> LocalNode {
        Self::start_with(node, |_| {})
    }

    /// Like [`LocalNode::start`]; `prepare` may put files (other images)
    /// into the agent's data dir before it starts.
    pub fn start_with(node: &str, prepare: impl FnOnce(&Path)) -> LocalNode {
        let mut c = Self::new(node, prepare);
        c.start_agent();
        c.wait_node_ready();
        c
    }

    /// The server and the agent's data dir, without the agent yet: set
    /// the public fields, then [`LocalNode::start_agent`].
    pub fn new(node: &str, prepare: impl FnOnce(&Path)) -> LocalNode {
        let server = Server::start();
        let data = server.dir.path().join("agent-data");
        write_busybox(&data);
        prepare(&data);
        let name = server
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        LocalNode {
            server,
            node: node.to_string(),
            data,
            cgroup_parent: format!("rkube-test/{name}"),
            kubelet_port: free_port(),
            registries: PathBuf::from("/nonexistent"),
            // These shared machines run with little free disk; DiskPressure
            // would taint the node and keep the scheduler away.
            eviction_hard: "nodefs.available<1%".to_string(),
            image_gc_high_threshold: "100".to_string(),
            agent_args: Vec::new(),
            agent: None,
            starts: 0,
        }
    }

    /// Starts the agent (again: it re-adopts the running containers),
    /// each start logging to a file of its own.
    pub fn start_agent(&mut self) {
        self.starts += 1;
        let log = self.agent_log_path(self.starts);
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--node-name", &self.node, "--node-ip", "127.0.0.1"])
            .args(["--kubelet-port", &self.kubelet_port.to_string()])
            .args(["--cgroup-parent", &self.cgroup_parent])
            .arg("--registries")
            .arg(&self.registries)
            .args(["--eviction-hard", &self.eviction_hard])
            .args(["--image-gc-high-threshold", &self.image_gc_high_threshold])
            .args(&self.agent_args)
            // In the machine's own namespace: no pod network of ours.
            .args(["--network-backend", "none"])
            // The kubelet API (exec, logs), trusting the server's client CA.
            .arg("--client-ca-file")
            .arg(self.server.dir.path().join("server/tls/client-ca.crt"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start rkube agent");
        self.agent = Some(child);
    }

    /// Stops the agent (SIGKILL); its containers keep running.
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn agent_log_path(&self, start: u32) -> PathBuf {
        self.server
            .dir
            .path()
            .join(format!("node-agent-{start}.log"))
    }

    /// Every agent start's log, oldest first, for failure messages.
    pub fn agent_logs(&self) -> String {
        (1..=self.starts)
            .map(|s| std::fs::read_to_string(self.agent_log_path(s)).unwrap_or_default())
            .collect()
    }

    pub fn wait_node_ready(&self) {
        let ok = eventually(READY, || {
            self.get(
                &["node", &self.node],
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            ) == "True"
        });
        assert!(ok, "node not Ready:\n{}", self.agent_logs());
    }

    /// kubectl that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.server.ok(args)
    }

    pub fn apply(&self, yaml: &str) {
        self.server.ok_stdin(&["apply", "-f", "-"], yaml);
    }

    /// `kubectl get <what> -o jsonpath=<path>`; empty when kubectl fails.
    pub fn get(&self, what: &[&str], path: &str) -> String {
        self.server.jsonpath(&[&["get"][..], what].concat(), path)
    }

    /// Polls a field of `what` until `want` holds; returns it. Fails with
    /// the object and the agent's log.
    pub fn wait(&self, what: &[&str], path: &str, want: impl Fn(&str) -> bool) -> String {
        self.wait_within(what, path, READY, want)
    }

    /// [`LocalNode::wait`] with a deadline of its own.
    pub fn wait_within(
        &self,
        what: &[&str],
        path: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        let ok = eventually(timeout, || {
            last = self.get(what, path);
            want(&last)
        });
        assert!(
            ok,
            "{what:?} {path}: last {last:?}\n{}\nagent:\n{}",
            String::from_utf8_lossy(
                &self
                    .server
                    .kubectl(&[&["get"][..], what, &["-o", "yaml"]].concat())
                    .stdout
            ),
            self.agent_logs()
        );
        last
    }

    pub fn wait_phase(&self, pod: &str, phase: &str) {
        self.wait(&["pod", pod], "{.status.phase}", |p| p == phase);
    }

    pub fn wait_running(&self, pod: &str) {
        self.wait_phase(pod, "Running");
    }

    /// The waiting reason of a pod's first container, once it is one of
    /// `reasons`.
    pub fn wait_waiting(&self, pod: &str, reasons: &[&str]) -> String {
        self.wait(
            &["pod", pod],
            "{.status.containerStatuses[0].state.waiting.reason}",
            |r| reasons.contains(&r),
        )
    }

    /// The events about `object` (`kubectl get events`).
    pub fn events(&self, object: &str) -> String {
        let selector = format!("involvedObject.name={object}");
        self.ok(&["get", "events", "--field-selector", &selector])
    }

    /// Polls until the events about `object` mention every one of `words`.
    pub fn wait_events(&self, object: &str, words: &[&str]) -> String {
        let mut last = String::new();
        let ok = eventually(READY, || {
            last = self.events(object);
            words.iter().all(|w| last.contains(w))
        });
        assert!(ok, "events of {object} lack {words:?}:\n{last}");
        last
    }

    /// `kubectl logs <pod>`, which must succeed.
    pub fn logs(&self, pod: &str) -> String {
        self.ok(&["logs", pod])
    }

    /// A file's content in a pod's container; empty when exec fails.
    pub fn exec_cat(&self, pod: &str, file: &str) -> String {
        let out = self.server.kubectl(&["exec", pod, "--", "cat", file]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A pod's metadata.uid.
    pub fn uid(&self, pod: &str) -> String {
        self.get(&["pod", pod], "{.metadata.uid}")
    }

    /// A file below the agent's cgroup parent in one hierarchy (`rel` is
    /// e.g. `kubepods/...`).
    pub fn cgroup_file(&self, controller: &str, rel: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
            .join(rel)
    }

    /// [`LocalNode::cgroup_file`]'s content, trimmed; it must exist.
    pub fn read_cgroup(&self, controller: &str, rel: &str) -> String {
        let p = self.cgroup_file(controller, rel);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// The CRI log of a pod's container (attempt `n`), as the agent wrote
    /// it.
    pub fn log_file(&self, pod: &str, container: &str, n: u32) -> String {
        let uid = self.get(&["pod", pod], "{.metadata.uid}");
        let p = self.data.join(format!(
            "agent/logs/pods/default_{pod}_{uid}/{container}/{n}.log"
        ));
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// The lines of a CRI log with timestamp, stream and tag stripped.
    pub fn log_lines(&self, pod: &str, container: &str, n: u32) -> Vec<String> {
        self.log_file(pod, container, n)
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
            .collect()
    }

    /// `rkube ctr <args>` on the agent's runtime (its containers, images
    /// and cgroup parent).
    pub fn ctr(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("ctr")
            .arg("--root")
            .arg(self.data.join("agent/containers"))
            .arg("--images")
            .arg(self.data.join("agent/images"))
            .arg("--registries")
            .arg(&self.registries)
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(args)
            .output()
    }

    /// The runtime's container table (`rkube ctr ps`).
    pub fn runtime_ps(&self) -> String {
        self.ctr(&["ps"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill_agent();
        // Containers outlive the agent by design: remove them, then what
        // is left of their cgroups and mounts.
        for line in self.runtime_ps().lines().skip(1) {
            if let Some(id) = line.split_whitespace().next() {
                let _ = self.ctr(&["rm", "-f", id]);
            }
        }
        remove_cgroups(&self.cgroup_parent);
        unmount_under(&self.data);
    }
}
