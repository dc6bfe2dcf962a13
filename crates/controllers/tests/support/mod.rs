//! Behaviour-test harness: a real `rkube server` on a loopback port with
//! its own data dir, and a kube client for it. The server binary comes
//! from the shared target directory (`cargo build -p rkube` first); the
//! controllers under test run inside the test process, as clients.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `rkube server`, killed on drop.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rkube_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug/rkube");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p rkube` before these tests",
        bin.display()
    );
    bin
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(rkube_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--bind-address", "127.0.0.1"])
            .args(["--https-listen-port", &port.to_string()])
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            // The controllers under test run in the test process; the
            // server's own controller manager would race them.
            .arg("--disable-controller-manager")
            // No node and no scheduler: pods stay unscheduled, so their
            // deletion never waits on a kubelet. (An embedded agent would
            // also fight other tests' servers for the kubelet port.)
            .arg("--disable-scheduler")
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
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rkube server exited with {status}:\n{}", self.log());
            }
            if self.kubeconfig.exists() {
                if let Ok(client) = self.try_client().await {
                    let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
                    if client.request_text(req).await.is_ok() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "rkube server not ready in 60s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_client(&self) -> Result<kube::Client, Box<dyn std::error::Error>> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    pub async fn client(&self) -> kube::Client {
        self.try_client().await.expect("client from kubeconfig")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` until it yields `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
