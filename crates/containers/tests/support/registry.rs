//! Launches Debian's `docker-registry` (distribution 2.8) on a free
//! loopback port with storage in a temp dir, optionally behind htpasswd
//! basic auth. Dropping the handle kills the process.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/docker-registry";

pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry (pull and push without credentials).
    pub fn start() -> Registry {
        Registry::launch(None, false)
    }

    /// A registry that requires basic auth for every request.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Registry::launch(Some((user, password)), false)
    }

    /// An HTTPS registry with a fresh self-signed certificate for
    /// 127.0.0.1; `ca_file()` is its PEM.
    pub fn start_tls() -> Registry {
        Registry::launch(None, true)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn launch(auth: Option<(&str, &str)>, tls: bool) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 5).expect("bcrypt");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rkube-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if tls {
            let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
            let certified = rcgen::generate_simple_self_signed(names).expect("self-signed cert");
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, certified.cert.pem()).expect("write cert");
            std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {BINARY} (apt package docker-registry): {e}"));
        let mut registry = Registry { addr, child, dir };
        registry.wait_ready(tls);
        registry
    }

    /// Polls `GET /v2/` until the registry answers (200, or 401 with auth;
    /// a TLS registry answers plain HTTP with 400).
    fn wait_ready(&mut self, tls: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait registry") {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if let Some(code) = self.get_status("/v2/") {
                if code == 200 || code == 401 || (tls && code == 400) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry not ready in time: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Status code of a plain GET, or None if the connection failed.
    pub fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf).ok()?;
        let line = String::from_utf8_lossy(&buf[..n]);
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's storage root (filesystem driver).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Path of a blob's bytes inside the registry's storage.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.storage().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
