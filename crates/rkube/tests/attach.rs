//! A container's stdin, attach and terminal sizes through the API server
//! to a real kubelet, with real kubectl 1.32 (WebSocket,
//! `v5.channel.k8s.io`) and 1.27 (SPDY/3.1; 1.29 too for `run -i`):
//! `kubectl run -i --rm` piping input and deleting the pod, `kubectl run
//! -it` typing into a shell, `kubectl attach -i` to `cat` (stdin kept
//! across attaches and across an agent restart), stdinOnce closing stdin
//! when the first client leaves, and window sizes reaching the terminals
//! of `exec -t` and `attach -t`. kubectl sends sizes only from a real
//! terminal, so those run under `script` with the size set by `stty`.
//!
//! One cluster (server + agent with its own node name, data dir, kubelet
//! port and cgroup parent) serves every check, to keep the run short.

mod support;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkube_containers::image::build::LayerBuilder;
use support::images::busybox_image;
use support::node::LocalNode;
use support::{eventually, kubectl_dir};

const IMAGE: &str = "example.com/test/busybox:1";

/// The one-node harness, plus what these checks need of it.
struct Cluster {
    node: LocalNode,
}

impl Cluster {
    /// The server and its node, whose busybox also has `stty`.
    fn start(node: &str) -> Cluster {
        let node = LocalNode::start_with(node, |data| {
            busybox_image()
                .layer(
                    LayerBuilder::new()
                        .dir("bin", 0o755)
                        .symlink("bin/stty", "busybox"),
                )
                .build()
                .unwrap()
                .write_oci_archive(IMAGE, &data.join("agent/images/busybox.tar"))
                .unwrap();
        });
        Cluster { node }
    }

    fn logs(&self, pod: &str) -> String {
        String::from_utf8_lossy(&self.node.server.kubectl(&["logs", pod]).stdout).into_owned()
    }

    fn gone(&self, pod: &str) -> bool {
        eventually(Duration::from_secs(60), || {
            let out = self.node.server.kubectl(&["get", "pod", pod]);
            String::from_utf8_lossy(&out.stderr).contains("NotFound")
        })
    }

    /// A kubectl binary from beside the one on PATH (`kubectl.1.32`
    /// speaks WebSocket to exec and attach, `kubectl.1.27` SPDY).
    fn kubectl(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_dir().join(bin));
        cmd.env("KUBECONFIG", &self.node.server.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(args);
        cmd
    }

    /// `kubectl` with `args` under a new pseudo-terminal of `rows` x
    /// `cols`, as a user at a terminal runs it.
    fn on_terminal(&self, bin: &str, args: &[&str], (rows, cols): (u16, u16)) -> Session {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!(
            "stty rows {rows} cols {cols}; \
             (while [ ! -e resize ] && kill -0 $$; do sleep 0.1; done; \
              stty rows 40 cols 120 </dev/tty) & \
             exec {} {}",
            kubectl_dir().join(bin).display(),
            quoted.join(" ")
        );
        let dir = tempfile::tempdir_in(self.node.server.dir.path()).unwrap();
        let mut cmd = Command::new("script");
        cmd.args(["-qfec", &script, "/dev/null"])
            .current_dir(dir.path())
            .env("KUBECONFIG", &self.node.server.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST");
        Session::spawn(cmd, Some(dir))
    }
}

/// A running command with piped stdin; its output gathered on a thread.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    dir: Option<tempfile::TempDir>,
}

impl Session {
    fn spawn(mut cmd: Command, dir: Option<tempfile::TempDir>) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let output = Arc::new(Mutex::new(String::new()));
        for mut r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Session {
            stdin: child.stdin.take(),
            child,
            output,
            dir,
        }
    }

    fn write(&mut self, data: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(data.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `want`.
    fn expect(&mut self, want: &str) {
        let ok = eventually(Duration::from_secs(60), || self.output().contains(want));
        if !ok {
            let _ = self.child.kill();
            panic!("no {want:?} in output:\n{}", self.output());
        }
    }

    /// Waits for the process to exit by itself; its success.
    fn wait(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("still running:\n{}", self.output());
    }

    /// Makes the terminal of [`Cluster::on_terminal`] 40 x 120.
    fn resize(&self) {
        let dir = self.dir.as_ref().expect("a terminal session");
        std::fs::write(dir.path().join("resize"), "").unwrap();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, fields: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n{fields}    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

const OLD: &str = "kubectl.1.27";
const NEW: &str = "kubectl.1.32";

#[test]
fn stdin_attach_and_terminal_sizes() {
    if !nix_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut c = Cluster::start("attach-node");
    let manifests = [
        pod("cat", "    stdin: true\n", "cat"),
        pod(
            "once",
            "    stdin: true\n    stdinOnce: true\n",
            "cat; echo eof-one; cat; echo eof-two; sleep 3600",
        ),
        pod(
            "term",
            "    stdin: true\n    tty: true\n",
            "while :; do echo size:$(stty size); sleep 0.3; done",
        ),
    ];
    c.node
        .server
        .ok_stdin(&["apply", "-f", "-"], &manifests.join("---\n"));

    // kubectl run -i --rm: input piped in, output back, pod deleted.
    // 1.29 still speaks SPDY to exec and attach unless
    // KUBECTL_REMOTE_COMMAND_WEBSOCKETS is set (on by default from 1.30).
    let runs = [
        (NEW, "run-ws"),
        (OLD, "run-spdy"),
        ("kubectl.1.29", "run-129"),
    ];
    for (bin, name) in runs {
        let out = c
            .kubectl(
                bin,
                &[
                    "run",
                    "-i",
                    "--rm",
                    "--restart=Never",
                    "--image",
                    IMAGE,
                    "--image-pull-policy=Never",
                    name,
                    "--",
                    "sh",
                    "-c",
                    "read l; echo got:$l",
                ],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(b"hello\n")?;
                child.wait_with_output()
            })
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("got:hello"),
            "{bin} run -i: {}\n{stdout}\n{}\nagent:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            c.node.agent_logs()
        );
        assert!(c.gone(name), "{name} not deleted");
    }

    // kubectl attach -i to cat: what goes in comes out, and stdin stays
    // open for the next client (no stdinOnce).
    c.node.wait_running("cat");
    for (bin, word) in [(NEW, "ping-ws"), (OLD, "ping-spdy")] {
        let mut a = Session::spawn(c.kubectl(bin, &["attach", "-i", "cat"]), None);
        a.write(&format!("{word}\n"));
        a.expect(word);
        a.close_stdin();
        // Without stdinOnce, the client's EOF does not end cat.
        let st = c
            .node
            .server
            .ok(&["get", "pod", "cat", "-o", "jsonpath={.status.phase}"]);
        assert_eq!(st, "Running");
    }
    assert!(c.logs("cat").contains("ping-ws\nping-spdy"));
    // The attach connection belongs to the container, not to the agent:
    // a restarted agent attaches to the container it re-adopted.
    c.node.kill_agent();
    c.node.start_agent();
    c.node.wait_node_ready();
    // Ready may still be the old agent's report: wait for the new kubelet
    // to serve the pod's log, which needs the container re-adopted.
    let served = eventually(Duration::from_secs(60), || {
        c.logs("cat").contains("ping-spdy")
    });
    assert!(served, "restarted kubelet:\n{}", c.node.agent_logs());
    let mut a = Session::spawn(c.kubectl(NEW, &["attach", "-i", "cat"]), None);
    a.write("after-restart\n");
    a.expect("after-restart");
    drop(a);

    // stdinOnce: the first client leaving (killed, not even an EOF)
    // closes stdin; the next read sees EOF at once.
    c.node.wait_running("once");
    {
        let mut a = Session::spawn(c.kubectl(OLD, &["attach", "-i", "once"]), None);
        a.write("first-client\n");
        a.expect("first-client");
        assert!(!c.logs("once").contains("eof-one"));
    }
    let closed = eventually(Duration::from_secs(30), || {
        let l = c.logs("once");
        l.contains("first-client\neof-one\neof-two")
    });
    assert!(closed, "stdin not closed: {}", c.logs("once"));

    // exec -t: the terminal has the client's size.
    let probe = "for i in $(seq 100); do s=$(stty size); [ \"$s\" != \"0 0\" ] && break; sleep 0.1; done; echo size:$s";
    for bin in [NEW, OLD] {
        let mut t = c.on_terminal(
            bin,
            &["exec", "-it", "cat", "--", "sh", "-c", probe],
            (33, 97),
        );
        t.expect("size:33 97");
        assert!(t.wait(), "{bin} exec -it failed:\n{}", t.output());
    }

    // attach -t: the size, then a resize, reach the container's terminal.
    c.node.wait_running("term");
    for bin in [NEW, OLD] {
        let mut t = c.on_terminal(bin, &["attach", "-it", "term"], (33, 97));
        t.expect("size:33 97");
        t.resize();
        t.expect("size:40 120");
    }

    // kubectl run -it: a shell on a terminal, typed into, then gone.
    let mut t = c.on_terminal(
        NEW,
        &[
            "run",
            "-it",
            "--rm",
            "--restart=Never",
            "--image",
            IMAGE,
            "--image-pull-policy=Never",
            "shell",
            "--",
            "sh",
        ],
        (24, 80),
    );
    t.expect("If you don't see a command prompt");
    t.write("echo hi-$((6*7))\r");
    t.expect("hi-42");
    t.write("exit\r");
    assert!(t.wait(), "run -it failed:\n{}", t.output());
    assert!(c.gone("shell"), "shell pod not deleted");
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
