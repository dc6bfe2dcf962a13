//! One HTTPS POST of an AdmissionReview to a webhook: where to connect
//! (a URL, or a Service's ready endpoint), whom to trust (the caBundle, or
//! the system roots when it is empty), and the timeout.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/util/webhook`
//! (`ClientManager.HookClient`, the service resolver, `?timeout=` on the
//! URL) and the error wording of `webhook/errors.ErrCallingWebhook`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use http::{header, Request};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The default and the most a webhook may take (upstream's
/// `timeoutSeconds` default and validation limit).
const DEFAULT_TIMEOUT: u64 = 10;
const MAX_TIMEOUT: u64 = 30;

/// Why a call failed; the text follows `failed calling webhook "<name>": `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to call webhook: Post {url:?}: {reason}")]
    Post { url: String, reason: String },
    #[error("failed to call webhook: the server responded with status {code} ({url})")]
    Status { code: u16, url: String },
    #[error("invalid webhook configuration: {0}")]
    Config(String),
    #[error("unable to load caBundle: {0}")]
    CaBundle(String),
    #[error("{0}")]
    Resolve(String),
}

/// Where a webhook is reached.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The name the server's certificate must carry.
    pub server_name: ServerName<'static>,
    pub host: String,
    /// Path and query, `?timeout=` included.
    pub path: String,
    /// The URL for messages.
    pub url: String,
}

/// The webhook's timeout: `timeoutSeconds`, default 10, at most 30.
pub fn timeout(spec: &Value) -> Duration {
    let secs = spec
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TIMEOUT)
        .clamp(1, MAX_TIMEOUT);
    Duration::from_secs(secs)
}

fn with_timeout(path: &str, timeout: Duration) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}timeout={}s", timeout.as_secs())
}

fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_string())
            .map_err(|e| Error::Config(format!("invalid host {host:?}: {e}"))),
    }
}

/// The target of `clientConfig.url` (https only).
pub async fn url_target(url: &str, timeout: Duration) -> Result<Target, Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Error::Config(format!("invalid url {url:?}: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(Error::Config(format!("url {url:?} must use https")));
    }
    let host = uri
        .host()
        .ok_or_else(|| Error::Config(format!("url {url:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let path = with_timeout(path, timeout);
    let full = format!(
        "https://{}{path}",
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    );
    let post_error = |reason: String| Error::Post {
        url: full.clone(),
        reason,
    };
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| post_error(format!("dial tcp: lookup {host}: {e}")))?
            .next()
            .ok_or_else(|| post_error(format!("dial tcp: lookup {host}: no such host")))?,
    };
    Ok(Target {
        addr,
        server_name: server_name(&host)?,
        host: uri.authority().map(|a| a.to_string()).unwrap_or(host),
        path,
        url: full,
    })
}

/// The target of `clientConfig.service` once resolved to `addr`: the
/// certificate must name `<service>.<namespace>.svc`.
pub fn service_target(
    service: &Value,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Target, Error> {
    let field = |f: &str| service.get(f).and_then(Value::as_str).unwrap_or("");
    let host = format!("{}.{}.svc", field("name"), field("namespace"));
    let path = match field("path") {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let port = service.get("port").and_then(Value::as_u64).unwrap_or(443);
    let path = with_timeout(&path, timeout);
    Ok(Target {
        addr,
        server_name: server_name(&host)?,
        url: format!("https://{host}:{port}{path}"),
        host,
        path,
    })
}

/// TLS client configurations by caBundle, built once each.
#[derive(Default)]
pub struct TlsConfigs {
    by_bundle: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
}

impl TlsConfigs {
    /// The configuration trusting `ca_bundle` (base64 PEM as in the API
    /// object), or the system's roots when it is empty.
    pub fn get(&self, ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut cache = self.by_bundle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(ca_bundle) {
            return Ok(c.clone());
        }
        let mut config = if ca_bundle.is_empty() {
            system_roots()?
        } else {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(ca_bundle)
                .map_err(|e| Error::CaBundle(e.to_string()))?;
            let pem = String::from_utf8(pem).map_err(|e| Error::CaBundle(e.to_string()))?;
            rkube_pki::tls::client_config(&pem, None).map_err(|e| Error::CaBundle(e.to_string()))?
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        // A handful of distinct bundles in practice; a bound keeps a
        // churning configuration from growing this without end.
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(ca_bundle.to_string(), config.clone());
        Ok(config)
    }
}

fn system_roots() -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(rkube_pki::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::CaBundle(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// POST `body` to `target`; the response body of a 2xx answer. The whole
/// exchange is bounded by `limit`.
pub async fn post(
    tls: Arc<rustls::ClientConfig>,
    target: &Target,
    body: Vec<u8>,
    limit: Duration,
) -> Result<Vec<u8>, Error> {
    match tokio::time::timeout(limit, exchange(tls, target, body)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Post {
            url: target.url.clone(),
            reason: "context deadline exceeded".into(),
        }),
    }
}

async fn exchange(
    tls: Arc<rustls::ClientConfig>,
    target: &Target,
    body: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let failed = |reason: String| Error::Post {
        url: target.url.clone(),
        reason,
    };
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| failed(format!("dial tcp {}: connect: {e}", target.addr)))?;
    let _ = tcp.set_nodelay(true);
    let stream = TlsConnector::from(tls)
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| failed(format!("tls: {e}")))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let driver = tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(%err, "webhook connection ended");
        }
    });
    let req = Request::post(target.path.as_str())
        .header(header::HOST, target.host.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(body))
        .map_err(|e| failed(e.to_string()))?;
    let result = async {
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let code = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        if !code.is_success() {
            return Err(Error::Status {
                code: code.as_u16(),
                url: target.url.clone(),
            });
        }
        Ok(bytes.to_vec())
    }
    .await;
    driver.abort();
    result
}
