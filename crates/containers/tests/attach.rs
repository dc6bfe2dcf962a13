//! Behaviour tests of a container's stdin, live output and terminal size
//! through the attach socket, and of exec's terminal size, as root, on a
//! busybox root made from Debian's busybox-static.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rkube_containers::image::RunConfig;
use rkube_containers::runtime::attach::{Decoder, Message, WindowSize};
use rkube_containers::runtime::{
    ContainerConfig, ContainerState, ExecConfig, ExecIo, ImageSource, LocalRuntime, Runtime,
    RuntimeOptions, SandboxConfig,
};

/// One unpacked layer: busybox and the applets the tests call.
struct Busybox(PathBuf);

impl ImageSource for Busybox {
    fn resolve(&self, _image: &str) -> Result<(Vec<PathBuf>, RunConfig), String> {
        let config = RunConfig {
            env: Some(vec!["PATH=/bin".into()]),
            ..Default::default()
        };
        Ok((vec![self.0.clone()], config))
    }
}

struct Fixture {
    rt: LocalRuntime,
    sandbox: String,
    _root: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let layer = root.path().join("layer");
        std::fs::create_dir_all(layer.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
        for applet in ["sh", "cat", "echo", "stty", "sleep", "tty"] {
            std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
        }
        let mut options = RuntimeOptions::new(&root.path().join("containers"));
        let name = root.path().file_name().unwrap().to_string_lossy();
        options.cgroup_parent = PathBuf::from(format!("rkube-test/{name}"));
        let rt = LocalRuntime::new(options, Arc::new(Busybox(layer))).unwrap();
        let sandbox = rt
            .create_sandbox(&SandboxConfig {
                name: "attach".into(),
                namespace: "default".into(),
                uid: "uid-attach".into(),
                hostname: "attach".into(),
                ..Default::default()
            })
            .unwrap();
        Fixture {
            rt,
            sandbox,
            _root: root,
        }
    }

    fn start(&self, script: &str, stdin: bool, stdin_once: bool, tty: bool) -> String {
        let config = ContainerConfig {
            name: "c".into(),
            image: "busybox".into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            stdin,
            stdin_once,
            tty,
            ..Default::default()
        };
        let id = self.rt.create_container(&self.sandbox, &config).unwrap();
        self.rt.start(&id).unwrap();
        id
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.rt.status(id).unwrap().log_path).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for s in self.rt.list().unwrap_or_default() {
            let _ = self.rt.remove(&s.id);
        }
        let _ = self.rt.remove_sandbox(&self.sandbox);
    }
}

/// A test-side attach client; output frames arrive on a thread.
struct Client {
    sock: UnixStream,
    frames: mpsc::Receiver<Message>,
    seen: String,
}

impl Client {
    fn connect(rt: &LocalRuntime, id: &str, stdin: bool) -> Client {
        let mut sock = rt.attach(id).unwrap();
        sock.write_all(&Message::Hello { stdin }.encode()).unwrap();
        let mut r = sock.try_clone().unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut d = Decoder::default();
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                d.push(&buf[..n]);
                while let Ok(Some(m)) = d.next_message() {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
            }
        });
        Client {
            sock,
            frames,
            seen: String::new(),
        }
    }

    fn send(&mut self, m: Message) {
        self.sock.write_all(&m.encode()).unwrap();
    }

    /// Waits until the output so far contains `want`.
    fn expect(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(Message::Stdout(d)) | Ok(Message::Stderr(d)) => {
                    self.seen.push_str(&String::from_utf8_lossy(&d))
                }
                Ok(_) => {}
                Err(_) => panic!("no {want:?} in attached output {:?}", self.seen),
            }
        }
    }
}

impl Drop for Client {
    /// Leaves: the reader thread's clone would keep the socket open.
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn stdin_reaches_the_process_and_stays_open_across_attaches() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = Fixture::new();
    let id = f.start("cat", true, false, false);
    let mut a = Client::connect(&f.rt, &id, true);
    a.send(Message::Stdin(b"first\n".to_vec()));
    a.expect("first");
    // The client's stdin ends and it leaves: without stdinOnce the
    // process keeps its stdin.
    a.send(Message::CloseStdin);
    drop(a);
    let mut b = Client::connect(&f.rt, &id, true);
    b.send(Message::Stdin(b"second\n".to_vec()));
    b.expect("second");
    assert_eq!(f.rt.status(&id).unwrap().state, ContainerState::Running);
    // Output seen live also went to the log.
    assert!(eventually(|| f.log(&id).contains("stdout F second")));
    // An output-only client sees the same output.
    let mut watcher = Client::connect(&f.rt, &id, false);
    b.send(Message::Stdin(b"third\n".to_vec()));
    watcher.expect("third");
}

#[test]
fn stdin_once_closes_stdin_when_the_first_client_leaves() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = Fixture::new();
    // Two readers: the second sees EOF at once if stdin stays closed.
    let id = f.start("cat; echo eof-one; cat; echo eof-two", true, true, false);
    // A client without stdin leaving changes nothing.
    drop(Client::connect(&f.rt, &id, false));
    let mut a = Client::connect(&f.rt, &id, true);
    a.send(Message::Stdin(b"line\n".to_vec()));
    a.expect("line");
    assert_eq!(f.rt.status(&id).unwrap().state, ContainerState::Running);
    drop(a);
    let st = f.rt.wait(&id, Some(Duration::from_secs(30))).unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(0)));
    let log = f.log(&id);
    assert!(log.contains("eof-one") && log.contains("eof-two"), "{log}");
}

#[test]
fn a_terminal_takes_input_and_window_sizes() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = Fixture::new();
    let id = f.start(
        "read l; echo got:$l; while :; do echo size:$(stty size); sleep 0.2; done",
        true,
        false,
        true,
    );
    let mut a = Client::connect(&f.rt, &id, true);
    a.send(Message::Stdin(b"hi\r".to_vec()));
    a.expect("got:hi");
    a.send(Message::Resize(WindowSize {
        width: 97,
        height: 33,
    }));
    a.expect("size:33 97");
    a.send(Message::Resize(WindowSize {
        width: 120,
        height: 40,
    }));
    a.expect("size:40 120");
    // A terminal's output is logged as stdout, without its CR.
    assert!(eventually(|| f.log(&id).contains("stdout F got:hi\n")));
}

#[test]
fn exec_terminal_follows_sizes() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = Fixture::new();
    let id = f.start("sleep 1000", false, false, false);
    let (tx, sizes) = mpsc::channel();
    // Sent before the exec starts: the terminal has it from the start.
    tx.send(WindowSize {
        width: 81,
        height: 21,
    })
    .unwrap();
    let (r, w) = pipe();
    let io = ExecIo {
        stdin: None,
        stdout: w,
        stderr: std::fs::File::create("/dev/null").unwrap().into(),
    };
    let config = ExecConfig {
        cmd: vec!["stty".into(), "size".into()],
        tty: true,
        ..Default::default()
    };
    let code = f.rt.exec_resizable(&id, &config, io, sizes).unwrap();
    drop(tx);
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!((code, out.trim()), (0, "21 81"));
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().unwrap();
    (r.into(), w.into())
}
