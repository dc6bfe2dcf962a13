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
/// etcd's `--max-request-bytes` bounds the whole request (key, value and the
/// transaction around them), so its default of exactly 1.5 MiB refuses a
/// value of [`rkube_storage::MAX_VALUE_BYTES`]. Deployments of the etcd
/// backend need this much headroom too.
const MAX_REQUEST_BYTES: usize = rkube_storage::MAX_VALUE_BYTES + 64 * 1024;

/// A single-member etcd cluster listening on 127.0.0.1.
pub struct EtcdServer {
    /// The client URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub endpoint: String,
    /// With [`EtcdServer::start_tls`]: the files a client needs.
    pub tls: Option<ClientTls>,
    client_port: u16,
    peer_port: u16,
    /// With TLS, a plain-HTTP port serving `/health` for the readiness poll.
    metrics_port: u16,
    /// Holds `data/` (etcd's data dir), `etcd.log` (its stderr) and, with
    /// TLS, `pki/`.
    root: tempfile::TempDir,
    child: Option<Child>,
}

/// PEM files for a client of a TLS server: the CA that signed the server's
/// certificate, and a client certificate and key that the server accepts.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl EtcdServer {
    /// Start etcd on free loopback ports with an empty data dir and wait
    /// until it serves requests. Panics with etcd's log if it does not.
    pub fn start() -> EtcdServer {
        EtcdServer::launch(false)
    }

    /// Like [`EtcdServer::start`], but clients must speak TLS and present a
    /// certificate signed by a CA made for this server (`openssl` makes it).
    pub fn start_tls() -> EtcdServer {
        EtcdServer::launch(true)
    }

    fn launch(tls: bool) -> EtcdServer {
        let root = tempfile::Builder::new()
            .prefix("rkube-etcd-")
            .tempdir()
            .expect("create a temp dir for etcd");
        let tls = tls.then(|| make_pki(&root.path().join("pki")));
        let mut server = EtcdServer {
            endpoint: String::new(),
            tls,
            client_port: 0,
            peer_port: 0,
            metrics_port: 0,
            root,
            child: None,
        };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let [client_port, peer_port, metrics_port] = free_ports();
            server.client_port = client_port;
            server.peer_port = peer_port;
            server.metrics_port = metrics_port;
            let scheme = if server.tls.is_some() {
                "https"
            } else {
                "http"
            };
            server.endpoint = format!("{scheme}://127.0.0.1:{client_port}");
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

    /// Stop the server process without closing its sockets (SIGSTOP), as a
    /// hung member or a network partition looks to a client.
    pub fn freeze(&mut self) {
        self.signal("-STOP");
    }

    /// Let a frozen server run again (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("etcd is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("run kill (apt package procps)");
        assert!(status.success(), "kill {signal} {} failed", child.id());
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
        let client_url = self.endpoint.clone();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(ETCD_BINARY);
        let health_port = match &self.tls {
            None => self.client_port,
            Some(_) => {
                let pki = self.root.path().join("pki");
                command
                    .arg(format!(
                        "--trusted-ca-file={}",
                        pki.join("ca.crt").display()
                    ))
                    .arg(format!("--cert-file={}", pki.join("server.crt").display()))
                    .arg(format!("--key-file={}", pki.join("server.key").display()))
                    .arg("--client-cert-auth")
                    .arg(format!(
                        "--listen-metrics-urls=http://127.0.0.1:{}",
                        self.metrics_port
                    ));
                self.metrics_port
            }
        };
        let child = command
            .arg("--name=rkube-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=rkube-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--max-request-bytes={MAX_REQUEST_BYTES}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {ETCD_BINARY} (apt package etcd-server): {e}"));
        self.child = Some(child);

        let addr = SocketAddr::from(([127, 0, 0, 1], health_port));
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

/// Distinct free ports: all listeners are held at once so the kernel
/// cannot hand out the same port twice.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir`, made with the `openssl` command.
fn make_pki(dir: &Path) -> ClientTls {
    std::fs::create_dir_all(dir).expect("create the pki dir");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &new_key[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=rkube-test-ca",
            ],
        ]
        .concat(),
    );
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("write the extensions file");
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN=rkube-test-{name}");
        openssl(
            &[
                &["req"],
                &new_key[..],
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ]);
    }
    ClientTls {
        ca_file: dir.join("ca.crt"),
        cert_file: dir.join("client.crt"),
        key_file: dir.join("client.key"),
    }
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
