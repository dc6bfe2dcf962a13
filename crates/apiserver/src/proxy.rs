//! The pod subresources served by the pod's kubelet — `pods/log`,
//! `pods/exec`, `pods/attach`, `pods/portforward` — and `nodes/proxy`:
//! find the node, dial its kubelet over TLS with the API server's kubelet
//! client certificate, and stream the answer back. Upgrades (SPDY/3.1,
//! WebSocket) are passed through: the kubelet's `101` goes to the client
//! and then bytes are copied both ways.
//!
//! Upstream counterpart: `pkg/registry/core/pod/rest/{log,subresources}.go`
//! with `pkg/registry/core/pod/strategy.go` (`LogLocation`,
//! `ExecLocation`, `PortForwardLocation`: container validation and their
//! messages), `pkg/registry/core/node/rest/proxy.go`, and the
//! `UpgradeAwareHandler` of `k8s.io/apimachinery/pkg/util/proxy`. As
//! kube-apiserver without `--kubelet-certificate-authority`, the kubelet's
//! serving certificate is not verified unless a CA is configured.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rkube_machinery::{Status, StatusError};
use rkube_registry::ResourceStore;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::request::{Query, RequestInfo};
use crate::ApiServer;

type Result<T, E = StatusError> = std::result::Result<T, E>;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Log query parameters the kubelet understands.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubelet client TLS config: {0}")]
    Tls(#[from] rkube_pki::tls::Error),
    #[error("kubelet client TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("kubelet client certificate: {0}")]
    Pem(String),
}

/// How the API server reaches kubelets.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl KubeletClient {
    /// Presents `client` (CN=kube-apiserver-kubelet-client); verifies the
    /// kubelet's serving certificate against `kubelet_ca_pem` when given.
    pub fn new(client: &rkube_pki::CertKey, kubelet_ca_pem: Option<&str>) -> Result<Self, Error> {
        let mut config = match kubelet_ca_pem {
            Some(ca) => rkube_pki::tls::client_config(ca, Some(client))?,
            None => any_server_config(client)?,
        };
        // Upgrades need HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: Arc::new(config),
        })
    }

    /// An HTTP/1.1 connection to the kubelet at `ip:port`.
    async fn connect(
        &self,
        ip: IpAddr,
        port: u16,
    ) -> Result<hyper::client::conn::http1::SendRequest<Body>> {
        let unreachable = |e: &dyn std::fmt::Display| {
            StatusError::from(Status::failure(
                502,
                "ServiceUnavailable",
                format!("error dialing backend: dial tcp {ip}:{port}: {e}"),
            ))
        };
        let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((ip, port)))
            .await
            .map_err(|_| unreachable(&"i/o timeout"))?
            .map_err(|e| unreachable(&e))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(&e))?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(%err, "kubelet connection ended");
            }
        });
        Ok(send)
    }
}

/// A client config presenting `client` that accepts any kubelet serving
/// certificate (signatures in the handshake are still checked).
fn any_server_config(client: &rkube_pki::CertKey) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = rkube_pki::tls::provider();
    let chain = CertificateDer::pem_slice_iter(client.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes())
        .map_err(|e| Error::Pem(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(rkube_pki::tls::UnverifiedServer::new())
        .with_client_auth_cert(chain, key)?;
    Ok(config)
}

impl KubeletClient {
    /// GETs `path` from a kubelet; the body of a 2xx answer.
    pub async fn get(&self, ip: IpAddr, port: u16, path: &str) -> Result<bytes::Bytes> {
        let mut send = self.connect(ip, port).await?;
        let req = Request::get(path)
            .header(header::HOST, ip.to_string())
            .body(Body::empty())
            .map_err(StatusError::internal_error)?;
        let resp = send.send_request(req).await.map_err(|e| {
            StatusError::internal_error(format!("error talking to the kubelet: {e}"))
        })?;
        let code = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                StatusError::internal_error(format!("error reading from the kubelet: {e}"))
            })?
            .to_bytes();
        if !code.is_success() {
            return Err(kubelet_error(code, &body));
        }
        Ok(body)
    }
}

impl ApiServer {
    /// Proxy pod logs, exec, attach, port-forward and node proxy requests
    /// to kubelets through `client`.
    pub fn with_kubelet_client(mut self, client: KubeletClient) -> ApiServer {
        self.kubelet = Some(Arc::new(client));
        self
    }
}

/// Whether this request is one of the proxied subresources.
pub fn is_proxied(info: &RequestInfo) -> bool {
    if !info.group.is_empty() {
        return false;
    }
    matches!(
        (info.resource.as_str(), info.subresource.as_deref()),
        ("pods", Some("log" | "exec" | "attach" | "portforward")) | ("nodes", Some("proxy"))
    )
}

pub async fn handle(
    server: &Arc<ApiServer>,
    rs: &Arc<ResourceStore>,
    info: &RequestInfo,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let name = info.name.as_deref().unwrap_or_default();
    let sub = info.subresource.as_deref().unwrap_or_default();
    let allowed: &[&str] = match sub {
        "log" => &["get"],
        "proxy" => &["get", "create", "update", "patch", "delete"],
        _ => &["get", "create"],
    };
    if !allowed.contains(&info.verb) {
        return Err(StatusError::method_not_supported(
            &rs.group_resource(),
            info.verb,
        ));
    }
    let Some(client) = server.kubelet.clone() else {
        return Err(StatusError::service_unavailable(
            "the API server has no kubelet client configured",
        ));
    };
    if info.resource == "nodes" {
        let node = rs.get(None, name, None).await?;
        let (ip, port) = kubelet_address(&node, name)?;
        let path = node_proxy_path(req.uri().path(), name);
        let target = with_query(&path, req.uri().query());
        return forward(&client, ip, port, target, req).await;
    }
    let ns = info.namespace.as_deref().unwrap_or("default");
    if sub != "log" {
        // CONNECT admission, before the pod is looked at (upstream's order).
        let options = crate::admission::webhook::connect_options(sub, req.uri().query());
        let webhooks = &server.admission.webhooks;
        webhooks
            .admit_connect(rs.info, ns, name, sub, &options)
            .await?;
    }
    let pod = rs.get(Some(ns), name, None).await?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let path = match sub {
        "log" => {
            let container = container_for(&pod, name, query.get("container"))?;
            if node_name.is_empty() {
                // Upstream answers an unscheduled pod's log with nothing.
                return Ok(Response::new(Body::empty()));
            }
            let kept = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                        .filter(|(k, _)| LOG_PARAMS.contains(&k.as_ref())),
                )
                .finish();
            with_query(
                &format!("/containerLogs/{ns}/{name}/{container}"),
                Some(&kept),
            )
        }
        "exec" | "attach" => {
            let container = container_for(&pod, name, query.get("container"))?;
            let phase = pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("");
            if matches!(phase, "Succeeded" | "Failed") {
                return Err(StatusError::bad_request(format!(
                    "cannot {sub} into a container in a completed pod; current phase is {phase}"
                )));
            }
            if node_name.is_empty() {
                return Err(StatusError::bad_request(format!(
                    "pod {name} does not have a host assigned"
                )));
            }
            with_query(
                &format!("/{sub}/{ns}/{name}/{container}"),
                req.uri().query(),
            )
        }
        _ => {
            if node_name.is_empty() {
                return Err(StatusError::bad_request(format!(
                    "pod {name} does not have a host assigned"
                )));
            }
            with_query(&format!("/portForward/{ns}/{name}"), req.uri().query())
        }
    };
    let nodes = server
        .resource("", "v1", "nodes")
        .expect("the catalog serves nodes");
    let node = nodes.get(None, &node_name, None).await?;
    let (ip, port) = kubelet_address(&node, &node_name)?;
    if sub == "log" && crate::websocket::is_upgrade(req.headers()) {
        return log_over_websocket(&client, ip, port, &path, req).await;
    }
    forward(&client, ip, port, path, req).await
}

/// `pods/log` to a WebSocket client (upstream's `wsstream` reader): each
/// chunk one message, base64 text for `base64.binary.k8s.io`.
async fn log_over_websocket(
    client: &KubeletClient,
    ip: IpAddr,
    port: u16,
    path: &str,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let mut send = client.connect(ip, port).await?;
    let get = Request::get(path)
        .header(header::HOST, ip.to_string())
        .body(Body::empty())
        .map_err(StatusError::internal_error)?;
    let resp = send
        .send_request(get)
        .await
        .map_err(|e| StatusError::internal_error(format!("error talking to the kubelet: {e}")))?;
    let code = resp.status();
    let mut body = resp.into_body();
    if !code.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(kubelet_error(code, &bytes));
    }
    let base64 = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim() == "base64.binary.k8s.io");
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let msg = if base64 {
                use base64::Engine;
                bytes::Bytes::from(base64::engine::general_purpose::STANDARD.encode(&data))
            } else {
                data
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    crate::websocket::serve(req, rx)
}

fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// `/api/v1/nodes/{name}/proxy/{rest}` → `/{rest}`.
fn node_proxy_path(path: &str, name: &str) -> String {
    let marker = format!("/nodes/{name}/proxy");
    match path.find(&marker) {
        Some(i) => {
            let rest = &path[i + marker.len()..];
            if rest.is_empty() {
                "/".to_string()
            } else {
                rest.to_string()
            }
        }
        None => "/".to_string(),
    }
}

/// Go's `%s` of a string slice: `[a b c]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn names_of<'a>(pod: &'a Value, field: &str) -> Vec<&'a str> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

/// The container a request means: the named one, which must exist, or
/// the only one. Messages are upstream's (`pod/strategy.go`).
fn container_for(pod: &Value, pod_name: &str, requested: Option<&str>) -> Result<String> {
    let app = names_of(pod, "containers");
    let init = names_of(pod, "initContainers");
    let ephemeral = names_of(pod, "ephemeralContainers");
    let Some(name) = requested else {
        if app.len() == 1 {
            return Ok(app[0].to_string());
        }
        let mut msg = format!(
            "a container name must be specified for pod {pod_name}, choose one of: {}",
            go_list(&app)
        );
        if !init.is_empty() {
            msg.push_str(&format!(
                " or one of the init containers: {}",
                go_list(&init)
            ));
        }
        if !ephemeral.is_empty() {
            msg.push_str(&format!(
                " or one of the ephemeral containers: {}",
                go_list(&ephemeral)
            ));
        }
        return Err(StatusError::bad_request(msg));
    };
    if app.contains(&name) || init.contains(&name) || ephemeral.contains(&name) {
        return Ok(name.to_string());
    }
    Err(StatusError::bad_request(format!(
        "container {name} is not valid for pod {pod_name}"
    )))
}

/// The kubelet's address from the Node: its InternalIP (else any
/// address that is an IP) and `daemonEndpoints.kubeletEndpoint.Port`.
pub(crate) fn kubelet_address(node: &Value, name: &str) -> Result<(IpAddr, u16)> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ip_of = |wanted: Option<&str>| {
        addresses.iter().find_map(|a| {
            let kind = a["type"].as_str()?;
            if wanted.is_some_and(|w| w != kind) {
                return None;
            }
            a["address"].as_str()?.parse::<IpAddr>().ok()
        })
    };
    let ip = ip_of(Some("InternalIP"))
        .or_else(|| ip_of(Some("ExternalIP")))
        .or_else(|| ip_of(None))
        .ok_or_else(|| {
            StatusError::from(Status::failure(
                502,
                "ServiceUnavailable",
                format!(
                    "no preferred addresses found; known addresses: {addresses:?} (node {name})"
                ),
            ))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .map_or(DEFAULT_KUBELET_PORT, |p| p as u16);
    Ok((ip, port))
}

/// Headers that go to the kubelet: the upgrade handshake and content
/// negotiation, never the client's credentials.
fn forwarded_headers(from: &HeaderMap) -> HeaderMap {
    let mut to = HeaderMap::new();
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::ACCEPT,
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
    ] {
        for v in from.get_all(&name) {
            to.append(name.clone(), v.clone());
        }
    }
    for v in from.get_all("x-stream-protocol-version") {
        to.append("x-stream-protocol-version", v.clone());
    }
    to
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
}

/// Sends `req` to the kubelet at `path` and relays the answer.
async fn forward(
    client: &KubeletClient,
    ip: IpAddr,
    port: u16,
    path: String,
    mut req: Request<Body>,
) -> Result<Response<Body>> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut send = client.connect(ip, port).await?;
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .body(if upgrade || req.method() == Method::GET {
            Body::empty()
        } else {
            std::mem::replace(req.body_mut(), Body::empty())
        })
        .map_err(StatusError::internal_error)?;
    *out.headers_mut() = forwarded_headers(req.headers());
    let host = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    if let Ok(h) = HeaderValue::from_str(&host) {
        out.headers_mut().insert(header::HOST, h);
    }
    let mut resp = send
        .send_request(out)
        .await
        .map_err(|e| StatusError::internal_error(format!("error talking to the kubelet: {e}")))?;
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(StatusError::internal_error(
                "kubelet switched protocols unasked",
            ));
        };
        let kubelet_upgrade = hyper::upgrade::on(&mut resp);
        let mut back = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            if k != header::CONTENT_LENGTH {
                back = back.header(k, v);
            }
        }
        tokio::spawn(async move {
            let (c, k) = match (client_upgrade.await, kubelet_upgrade.await) {
                (Ok(c), Ok(k)) => (c, k),
                (c, k) => {
                    tracing::debug!(client = c.is_ok(), kubelet = k.is_ok(), "upgrade failed");
                    return;
                }
            };
            let (mut c, mut k) = (TokioIo::new(c), TokioIo::new(k));
            let _ = tokio::io::copy_bidirectional(&mut c, &mut k).await;
        });
        return back
            .body(Body::empty())
            .map_err(StatusError::internal_error);
    }
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(kubelet_error(status, &body));
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let mut back = Response::new(Body::new(resp.into_body()));
    if let Some(ct) = content_type {
        back.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(back)
}

/// A kubelet error as the Status kubectl prints: the kubelet's own
/// Status when it sent one, else its text with the same code.
fn kubelet_error(code: StatusCode, body: &[u8]) -> StatusError {
    if let Ok(s) = serde_json::from_slice::<Status>(body) {
        if s.code != 0 {
            return s.into();
        }
    }
    let msg = String::from_utf8_lossy(body).trim().to_string();
    let reason = match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    Status::failure(i32::from(code.as_u16()), reason, msg).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_resolve_like_upstream() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                   "initContainers": [{"name": "i"}]}});
        assert_eq!(container_for(&pod, "p", Some("i")).unwrap(), "i");
        let err = container_for(&pod, "p", None).unwrap_err();
        assert_eq!(
            err.status().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let err = container_for(&pod, "p", Some("z")).unwrap_err();
        assert_eq!(
            (err.code(), err.status().message.as_str()),
            (400, "container z is not valid for pod p")
        );
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(container_for(&single, "p", None).unwrap(), "only");
    }

    #[test]
    fn kubelet_address_prefers_internal_ip_and_reads_the_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"},
                          {"type": "ExternalIP", "address": "1.2.3.4"},
                          {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12250}}}});
        assert_eq!(
            kubelet_address(&node, "n1").unwrap(),
            ("10.0.0.5".parse().unwrap(), 12250)
        );
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_address(&bare, "n1").unwrap_err().code(), 502);
    }

    #[test]
    fn node_proxy_paths_and_kubelet_errors() {
        assert_eq!(
            node_proxy_path("/api/v1/nodes/n1/proxy/stats/summary", "n1"),
            "/stats/summary"
        );
        assert_eq!(node_proxy_path("/api/v1/nodes/n1/proxy", "n1"), "/");
        let e = kubelet_error(
            StatusCode::BAD_REQUEST,
            b"previous terminated container \"c\" in pod \"p\" not found",
        );
        assert_eq!((e.code(), e.reason()), (400, "BadRequest"));
    }
}
