//! The `rkube server` process under test and an HTTP/2 client for it.
//!
//! The client is deliberately thin (hyper's connection-level HTTP/2 API
//! over tokio-rustls) so the benchmark measures the server, not a client
//! library: one TLS connection per simulated client, requests multiplexed
//! as streams, as client-go does with HTTP/2.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rkube_pki::CertKey;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// How long the server may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A running `rkube server` on a loopback port, killed on drop.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Server {
    /// Start the release binary on a fresh data dir.
    pub fn start() -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("rkube-bench-api-")
            .tempdir()
            .context("cannot create the server's temp dir")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        // BENCH_RKUBE_BIN: another build's server, to compare binaries.
        let bin = std::env::var_os("BENCH_RKUBE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_rkube").into());
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--bind-address", "127.0.0.1", "--https-listen-port"])
            .arg(port.to_string())
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kubeconfig.yaml"))
            .args(extra_args())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start rkube server")?;
        Ok(Server { child, dir, port })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Poll `/readyz` until it answers 200; fails early if the server exits.
    pub async fn wait_ready(&mut self) -> anyhow::Result<Api> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("rkube server exited with {status}:\n{}", self.log());
            }
            if self.kubeconfig().exists() {
                if let Ok(api) = Api::from_kubeconfig(&self.kubeconfig(), self.port) {
                    if let Ok(conn) = api.connect().await {
                        if let Ok((StatusCode::OK, _)) = conn.get("/readyz").await {
                            return Ok(api);
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "rkube server not ready in {READY_DEADLINE:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident set size of the server process (VmRSS), in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Extra `rkube server` flags from `BENCH_SERVER_ARGS` (split on
/// whitespace), e.g. `--disable-controller-manager` to measure the API
/// server without the controllers' informers in the same process.
fn extra_args() -> Vec<String> {
    std::env::var("BENCH_SERVER_ARGS")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// VmRSS of process `pid` from /proc, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .with_context(|| format!("no VmRSS line in {path}"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("unreadable VmRSS line {line:?}"))?;
    Ok(kib * 1024)
}

/// How to reach the API server: its address and the admin credentials.
#[derive(Clone)]
pub struct Api {
    port: u16,
    tls: TlsConnector,
}

impl Api {
    /// Read the CA and the admin client certificate out of the kubeconfig
    /// the server wrote.
    pub fn from_kubeconfig(path: &Path, port: u16) -> anyhow::Result<Api> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let field = |name: &str| -> anyhow::Result<String> {
            let prefix = format!("{name}:");
            let raw = text
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(&prefix))
                .with_context(|| format!("no {name} in {}", path.display()))?;
            let b64 = raw.trim().trim_matches(|c| c == '"' || c == '\'');
            let pem = STANDARD
                .decode(b64)
                .with_context(|| format!("{name} is not base64"))?;
            String::from_utf8(pem).with_context(|| format!("{name} is not UTF-8 PEM"))
        };
        let ca = field("certificate-authority-data")?;
        let client = CertKey {
            cert_pem: field("client-certificate-data")?,
            key_pem: field("client-key-data")?,
        };
        let mut config = rkube_pki::tls::client_config(&ca, Some(&client))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Api {
            port,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// A new TLS connection speaking HTTP/2.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .context("cannot connect to the API server")?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .context("TLS handshake with the API server failed")?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("the API server did not negotiate HTTP/2");
        }
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake failed")?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                eprintln!("HTTP/2 connection to the API server ended: {err:?}");
            }
        });
        Ok(Conn {
            send,
            base: format!("https://127.0.0.1:{}", self.port),
        })
    }
}

/// One HTTP/2 connection; clones share it (each request is a stream).
#[derive(Clone)]
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    base: String,
}

impl Conn {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let mut send = self.send.clone();
        send.ready().await.context("connection closed")?;
        send.send_request(req)
            .await
            .with_context(|| format!("request {path} failed"))
    }

    /// A whole request and response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the response to {path}"))?
            .to_bytes();
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.request(Method::GET, path, Bytes::new()).await
    }

    /// GET that must answer 200.
    pub async fn get_ok(&self, path: &str) -> anyhow::Result<Bytes> {
        let (status, body) = self.get(path).await?;
        expect(StatusCode::OK, status, path, &body)?;
        Ok(body)
    }

    /// POST that must answer 201 Created.
    pub async fn create(&self, path: &str, body: Bytes) -> anyhow::Result<Bytes> {
        let (status, body) = self.request(Method::POST, path, body).await?;
        expect(StatusCode::CREATED, status, path, &body)?;
        Ok(body)
    }

    /// Start a streaming GET (a watch); returns once the response headers
    /// arrived, i.e. once the server has registered the watch.
    pub async fn stream(&self, path: &str) -> anyhow::Result<Incoming> {
        let resp = self.send(Method::GET, path, Bytes::new()).await?;
        let status = resp.status();
        let body = resp.into_body();
        if status != StatusCode::OK {
            let body = body.collect().await?.to_bytes();
            return Err(unexpected(StatusCode::OK, status, path, &body));
        }
        Ok(body)
    }
}

fn expect(want: StatusCode, got: StatusCode, path: &str, body: &[u8]) -> anyhow::Result<()> {
    if got != want {
        return Err(unexpected(want, got, path, body));
    }
    Ok(())
}

fn unexpected(want: StatusCode, got: StatusCode, path: &str, body: &[u8]) -> anyhow::Error {
    anyhow::anyhow!(
        "{path}: expected {want}, got {got}: {}",
        String::from_utf8_lossy(&body[..body.len().min(500)])
    )
}
