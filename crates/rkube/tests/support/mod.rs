//! Behaviour-test harness: the real `rkube server` binary on a loopback
//! port with its own data dir, driven by the real kubectl.

#![allow(dead_code)]

pub mod agent;
pub mod cluster;
pub mod images;
pub mod node;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `rkube server`, killed on drop.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
}

/// `rkube agent` with `args` must refuse to start (bad flags are caught
/// before it reaches any server); returns what it printed on stderr.
pub fn agent_refuses(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["agent", "--kubeconfig", "/nonexistent"])
        .args(["--data-dir", "/nonexistent/rkube-flag-test"])
        .args(args)
        .output()
        .expect("run rkube agent");
    assert!(!out.status.success(), "rkube agent {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    /// Start on an existing data dir (a restart keeps the state).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::start_at(dir, "127.0.0.1", extra)
    }

    /// Start on `dir`, listening on `bind` (loopback, or a test bridge's
    /// address that agents in other namespaces reach).
    pub fn start_at(dir: tempfile::TempDir, bind: &str, extra: &[&str]) -> Server {
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let log = std::fs::File::create(dir.path().join(format!("server-{port}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--bind-address",
                bind,
                "--https-listen-port",
                &port.to_string(),
            ])
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            // Agent-free: parallel servers would clash on node names and
            // the kubelet port; kubelet tests start their agents apart.
            .arg("--disable-agent")
            .args(extra)
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

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rkube server exited with {status}:\n{}", self.log());
            }
            if self.kubeconfig.exists()
                && self.kubectl(&["get", "--raw", "/readyz"]).status.success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rkube server not ready in 30s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("server-{}.log", self.port)))
            .unwrap_or_default()
    }

    /// Stop the server (SIGKILL) and hand back its data dir.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_bin("kubectl", &self.kubeconfig, args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl_bin("kubectl", &self.kubeconfig, args, Some(stdin))
    }

    /// kubectl that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check(self.kubectl(args), args)
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        check(self.kubectl_stdin(args, stdin), args)
    }

    /// `kubectl <args> -o jsonpath=<path>`'s stdout; empty when kubectl
    /// fails (an object not there yet reads as "").
    pub fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let out = self.kubectl(&[args, &["-o", &format!("jsonpath={path}")]].concat());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `kubectl <args> -o jsonpath=<path>` until it reads `want`;
    /// past `timeout`, fails with the last value read and `context()`
    /// (what the test's cluster looks like).
    pub fn wait_jsonpath(
        &self,
        timeout: Duration,
        args: &[&str],
        path: &str,
        want: &str,
        context: impl FnOnce() -> String,
    ) {
        let mut last = String::new();
        let ok = eventually(timeout, || {
            last = self.jsonpath(args, path);
            last == want
        });
        assert!(
            ok,
            "{args:?} {path}: want {want:?}, last saw {last:?}\n{}",
            context()
        );
    }

    /// The last `n` lines of the server's log, newest first.
    pub fn log_tail(&self, n: usize) -> String {
        self.log()
            .lines()
            .rev()
            .take(n)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// kubectl run on a thread, for commands that block until the test
    /// changes something (`kubectl wait`); join for its output.
    pub fn kubectl_background(&self, args: &[&str]) -> std::thread::JoinHandle<Output> {
        let kubeconfig = self.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl_bin("kubectl", &kubeconfig, &args, None)
        })
    }

    /// kubectl that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail, printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn check(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a kubectl binary (`kubectl`, or `kubectl.1.29` from beside it).
pub fn kubectl_bin(bin: &str, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let path = if bin == "kubectl" {
        PathBuf::from("kubectl")
    } else {
        kubectl_dir().join(bin)
    };
    let mut cmd = Command::new(path);
    cmd.env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl is installed");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// The directory of the real kubectl, where kubectl.1.27 etc. live.
pub fn kubectl_dir() -> PathBuf {
    let which = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&which.stdout).trim())
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
