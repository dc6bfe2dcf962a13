//! `rkube agent` processes beside a test's [`Server`], killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, Server};

/// A fresh server with `nodes` simulated nodes (`<prefix>-0` ..)
/// registered within `timeout`.
pub fn simulated_cluster(prefix: &str, nodes: u32, timeout: Duration) -> (Server, Agent) {
    let server = Server::start();
    let agent = Agent::simulate_registered(&server, nodes, prefix, &[], timeout);
    (server, agent)
}

/// A running `rkube agent`.
pub struct Agent {
    child: Child,
    log: std::path::PathBuf,
}

impl Agent {
    /// `rkube agent --simulate N` with the admin kubeconfig, nodes named
    /// `<prefix>-0` .. `<prefix>-(N-1)`.
    pub fn simulate(server: &Server, nodes: u32, prefix: &str, extra: &[&str]) -> Agent {
        let mut args = vec![
            "--simulate".to_string(),
            nodes.to_string(),
            "--simulate-prefix".to_string(),
            prefix.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start(server, &args)
    }

    /// [`Agent::simulate`], then waits until the last node is registered.
    pub fn simulate_registered(
        server: &Server,
        nodes: u32,
        prefix: &str,
        extra: &[&str],
        timeout: Duration,
    ) -> Agent {
        let agent = Self::simulate(server, nodes, prefix, extra);
        let last = format!("{prefix}-{}", nodes - 1);
        assert!(
            eventually(timeout, || server
                .kubectl(&["get", "node", &last])
                .status
                .success()),
            "simulated nodes did not register:\n{}",
            agent.log()
        );
        agent
    }

    /// `rkube agent` with the admin kubeconfig, the given data dir in the
    /// server's temp dir, and extra flags. Without a pod network unless
    /// `extra` asks for one: the default (vxlan) would build a bridge in
    /// the test machine's own namespace.
    pub fn start(server: &Server, extra: &[String]) -> Agent {
        let n = std::fs::read_dir(server.dir.path()).map_or(0, |d| d.count());
        let log = server.dir.path().join(format!("agent-{n}.log"));
        let no_net = !extra.iter().any(|a| a.starts_with("--network-backend"));
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .arg("--data-dir")
            .arg(server.dir.path().join(format!("agent-{n}")))
            .args(
                no_net
                    .then_some(["--network-backend", "none"])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rkube agent");
        Agent { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stop the agent (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
