//! A real etcd server on loopback for tests and benchmarks.
//!
//! Upstream counterpart: the embedded etcd that `k8s.io/apiserver`'s storage
//! tests start (`etcd3/testserver`), done here with the Debian `etcd` binary
//! as a child process so the tests exercise the same server users run.
//!
//! Each server gets fresh loopback ports and a temporary data directory that
//! lives as long as the `EtcdServer`, so `kill` + `restart` keeps the data
//! (what a crash and restart does to a real member). fsync stays on: the
//! benchmarks compare durable writes.
#![allow(dead_code)] // each test binary uses a different part of the launcher

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD_BINARY: &str = "/usr/bin/etcd";
/// How long a fresh or restarted member may take to elect itself leader; the
/// build machines are shared and slow, so this is generous.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// Attempts with new ports when the ones picked were taken in the meantime.
const PORT_ATTEMPTS: usize = 5;

/// A single-member etcd cluster listening on 127.0.0.1.
pub struct EtcdServer {
    /// The client URL, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    /// Holds `data/` (etcd's data dir) and `etcd.log` (its stderr).
    root: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    /// Start etcd on free loopback ports with an empty data dir and wait
    /// until it serves requests. Panics with etcd's log if it does not.
    pub fn start() -> EtcdServer {
        let root = tempfile::Builder::new()
            .prefix("rkube-etcd-")
            .tempdir()
            .expect("create a temp dir for etcd");
        let mut server = EtcdServer {
            endpoint: String::new(),
            client_port: 0,
            peer_port: 0,
            root,
            child: None,
        };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let (client_port, peer_port) = free_port_pair();
            server.client_port = client_port;
            server.peer_port = peer_port;
            server.endpoint = format!("http://127.0.0.1:{client_port}");
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) if log.contains("address already in use") => {
                    // Another process took a port between our probe and
                    // etcd's bind: forget the half-initialised member (it
                    // recorded the old peer URL) and try other ports.
                    let _ = std::fs::remove_dir_all(server.data_dir());
                    let _ = std::fs::remove_file(server.log_path());
                    last_log = log;
                }
                Err(log) => panic!("etcd did not start:\n{log}"),
            }
        }
        panic!("etcd did not start after {PORT_ATTEMPTS} attempts with fresh ports:\n{last_log}");
    }

    /// Kill the server with SIGKILL (no clean shutdown) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same ports and data dir, and wait until
    /// it serves requests. Kills the running one first, if any.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn_and_wait() {
            panic!("etcd did not restart:\n{log}");
        }
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Everything etcd wrote to stderr so far, across restarts.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("etcd.log")
    }

    /// Spawn etcd and poll its health endpoint until it answers or the
    /// deadline passes; on failure, the log is the error.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the etcd log file");
        let client_url = format!("http://127.0.0.1:{}", self.client_port);
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(ETCD_BINARY)
            .arg("--name=rkube-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=rkube-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {ETCD_BINARY} (apt package etcd-server): {e}"));
        self.child = Some(child);

        let addr = SocketAddr::from(([127, 0, 0, 1], self.client_port));
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "etcd exited with {status}\n{}",
                        read_log(&log_path)
                    ));
                }
            }
            if is_healthy(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "etcd not healthy at {addr} after {READY_DEADLINE:?}\n{}",
                    read_log(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two distinct free ports: both listeners are held at once so the kernel
/// cannot hand out the same port twice.
fn free_port_pair() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    (port(&a), port(&b))
}

/// Whether etcd answers `GET /health` with a leader elected. A hand-written
/// HTTP/1.0 request keeps the launcher free of an HTTP client dependency.
fn is_healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.")
        && response.contains("200")
        && response.contains(r#""health":"true""#)
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}
