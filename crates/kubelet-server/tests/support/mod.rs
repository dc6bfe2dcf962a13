//! The test harness shared by the kubelet API's tests: a fake
//! `PodRuntime` whose exec runs real processes on this machine (and whose
//! attach hands out a connection the test plays the runtime's side of),
//! the API server's reviews, and a TLS client on loopback.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use rkube_containers::runtime::{ExecConfig, ExecIo, Stats};
use rkube_kubelet_server::auth::{Attributes, Decision, Delegate, UserInfo};
use rkube_kubelet_server::{
    serve, Config, ContainerInfo, ContainerStats, LookupError, PodNetwork, PodRuntime, PodStats,
    TermSize,
};
use rkube_pki::certs::{issue_client_cert, issue_serving_cert, SubjectAltNames};
use rkube_pki::{Ca, CertKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

pub struct Fake {
    pub dir: PathBuf,
    pub running: AtomicBool,
    /// What the next attach gets; `None`: no live attach (log follow).
    pub attach: Mutex<Option<tokio::net::UnixStream>>,
}

#[async_trait]
impl PodRuntime for Fake {
    async fn pods(&self) -> Vec<Pod> {
        let pod = serde_json::json!({"metadata": {"name": "web", "namespace": "default", "uid": "uid-1"}});
        vec![serde_json::from_value(pod).unwrap()]
    }

    async fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerInfo, LookupError> {
        if (namespace, pod) != ("default", "web") {
            return Err(LookupError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            });
        }
        if container != "app" {
            return Err(LookupError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            });
        }
        if previous {
            return Err(LookupError::NoPrevious {
                pod: pod.into(),
                container: container.into(),
            });
        }
        Ok(ContainerInfo {
            id: "app-1".into(),
            log_path: self.dir.join("app.log"),
            running: self.running.load(Ordering::SeqCst),
        })
    }

    async fn exec(
        &self,
        _id: &str,
        config: ExecConfig,
        io: ExecIo,
        _resize: mpsc::Receiver<TermSize>,
    ) -> Result<i32, String> {
        let stdin = match io.stdin {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        };
        let mut child = std::process::Command::new(&config.cmd[0])
            .args(&config.cmd[1..])
            .stdin(stdin)
            .stdout(Stdio::from(io.stdout))
            .stderr(Stdio::from(io.stderr))
            .spawn()
            .map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .map(|s| s.code().unwrap_or(255))
            .map_err(|e| e.to_string())
    }

    async fn attach(&self, _id: &str) -> Result<Option<tokio::net::UnixStream>, String> {
        Ok(self.attach.lock().unwrap().take())
    }

    async fn network(&self, _ns: &str, _pod: &str) -> Result<PodNetwork, LookupError> {
        Ok(PodNetwork::Host)
    }

    async fn pod_stats(&self) -> Vec<PodStats> {
        vec![PodStats {
            namespace: "default".into(),
            name: "web".into(),
            uid: "uid-1".into(),
            start_time: None,
            containers: vec![ContainerStats {
                name: "app".into(),
                start_time: None,
                stats: Stats {
                    cpu_usage_ns: 3_000_000_000,
                    memory_working_set: 1 << 20,
                    memory_usage: 2 << 20,
                },
            }],
        }]
    }
}

/// The API server's reviews: the token "viewer-token" is the user
/// "viewer", who may read stats but not use the `proxy` subresource.
pub struct Reviews;

#[async_trait]
impl Delegate for Reviews {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        Ok((token == "viewer-token").then(|| UserInfo {
            name: "viewer".into(),
            uid: "v-1".into(),
            groups: vec![],
        }))
    }

    async fn review_access(&self, a: &Attributes) -> Result<Decision, String> {
        Ok(Decision {
            allowed: a.user.name != "viewer" || a.subresource != "proxy",
            reason: String::new(),
        })
    }
}

pub struct Harness {
    pub addr: std::net::SocketAddr,
    pub ca: Ca,
    pub client: CertKey,
    pub fake: Arc<Fake>,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Harness {
    rkube_pki::install_crypto_provider();
    let now = time::OffsetDateTime::now_utc();
    let ca = Ca::generate("test-ca", now).unwrap();
    let sans = SubjectAltNames::parse(&["127.0.0.1"]).unwrap();
    let serving = issue_serving_cert(&ca, &sans, time::Duration::days(1), now).unwrap();
    let client = issue_client_cert(
        &ca,
        "kube-apiserver-kubelet-client",
        &["system:masters".to_string()],
        time::Duration::days(1),
        now,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake {
        dir: dir.path().to_path_buf(),
        running: AtomicBool::new(true),
        attach: Mutex::new(None),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        node_name: "node-1".into(),
        serving,
        client_ca_pem: ca.cert_pem().to_string(),
        auth: Arc::new(Reviews),
    };
    tokio::spawn(serve(listener, config, fake.clone()));
    Harness {
        addr,
        ca,
        client,
        fake,
        _dir: dir,
    }
}

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

impl Harness {
    pub async fn connect(&self, with_cert: bool) -> Tls {
        let cert = with_cert.then_some(&self.client);
        let mut cfg = rkube_pki::tls::client_config(self.ca.cert_pem(), cert).unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    /// A request; returns status, headers and the (streaming) body.
    pub async fn request(
        &self,
        with_cert: bool,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> http::Response<hyper::body::Incoming> {
        let tls = self.connect(with_cert).await;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send.send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap()
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.request(true, "GET", path, &[]).await;
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn upgrade(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> TokioIo<hyper::upgrade::Upgraded> {
        let resp = self.request(true, method, path, headers).await;
        assert_eq!(resp.status(), 101, "upgrade of {path}");
        TokioIo::new(hyper::upgrade::on(resp).await.unwrap())
    }
}
