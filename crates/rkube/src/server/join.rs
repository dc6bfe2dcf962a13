//! The join endpoint agents use with `--server URL --token T`: the
//! server's CA (unauthenticated; the agent checks it against the hash in
//! its token), then, authenticated by the join token, a client
//! certificate for `system:node:<name>` signed from the agent's CSR and a
//! serving certificate for the agent's kubelet API.
//!
//! Upstream counterpart: k3s's `/cacerts`, `/v1-k3s/client-kubelet.crt`
//! and `/v1-k3s/serving-kubelet.crt` handlers (`pkg/server/router.go`);
//! the node CSR rules are kube-controller-manager's
//! `kubernetes.io/kube-apiserver-client-kubelet` signer's.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use rkube_pki::{Ca, CsrPolicy, SubjectAltNames, Token};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const CACERTS: &str = "/v1-rkube/cacerts";
pub const CLIENT_KUBELET: &str = "/v1-rkube/client-kubelet.crt";
pub const SERVING_KUBELET: &str = "/v1-rkube/serving-kubelet.crt";

/// What an agent asks for.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node: String,
    /// PEM CSR (client certificate only).
    #[serde(default)]
    pub csr: String,
    /// Addresses for the serving certificate.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}

/// What the server answers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JoinResponse {
    pub cert: String,
    /// Only for serving certificates (the server made the key).
    #[serde(default)]
    pub key: String,
    #[serde(rename = "serverCA")]
    pub server_ca: String,
    #[serde(rename = "clientCA")]
    pub client_ca: String,
}

struct Join {
    token: Token,
    server_ca: Ca,
    client_ca: Ca,
}

/// The join routes over the CAs in `tls_dir`, with the token kept in
/// `token_path` (created on first start).
pub fn router(tls_dir: &Path, token_path: &Path) -> anyhow::Result<Router> {
    let now = OffsetDateTime::now_utc();
    let server_ca = Ca::load_or_create(tls_dir, "server-ca", now)?;
    let client_ca = Ca::load_or_create(tls_dir, "client-ca", now)?;
    let token = rkube_pki::load_or_create_token(token_path, server_ca.cert_pem().as_bytes())?;
    let state = Arc::new(Join {
        token,
        server_ca,
        client_ca,
    });
    Ok(Router::new()
        .route(CACERTS, get(cacerts))
        .route(CLIENT_KUBELET, post(client_kubelet))
        .route(SERVING_KUBELET, post(serving_kubelet))
        .with_state(state))
}

type Reply = (StatusCode, String);

fn refuse(code: StatusCode, msg: impl Into<String>) -> Reply {
    (code, msg.into())
}

async fn cacerts(State(j): State<Arc<Join>>) -> String {
    j.server_ca.cert_pem().to_string()
}

/// Token check and request parsing shared by both certificate routes.
fn admit(j: &Join, headers: &HeaderMap, body: &[u8]) -> Result<JoinRequest, Reply> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "a join token is required"))?;
    let token = Token::parse(presented.trim())
        .map_err(|_| refuse(StatusCode::UNAUTHORIZED, "invalid join token"))?;
    if !j.token.accepts(&token) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "invalid join token"));
    }
    let req: JoinRequest = serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("invalid request: {e}")))?;
    if req.node.is_empty() {
        return Err(refuse(StatusCode::BAD_REQUEST, "node name is required"));
    }
    Ok(req)
}

fn json(resp: &JoinResponse) -> Reply {
    (
        StatusCode::OK,
        serde_json::to_string(resp).unwrap_or_default(),
    )
}

async fn client_kubelet(State(j): State<Arc<Join>>, headers: HeaderMap, body: Bytes) -> Reply {
    let req = match admit(&j, &headers, &body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let policy = CsrPolicy::Node {
        name: Some(req.node.clone()),
    };
    let now = OffsetDateTime::now_utc();
    match rkube_pki::sign_csr(
        &j.client_ca,
        &req.csr,
        &policy,
        time::Duration::days(365),
        now,
    ) {
        Ok(cert) => {
            tracing::info!(node = %req.node, "issued a kubelet client certificate");
            json(&JoinResponse {
                cert,
                server_ca: j.server_ca.cert_pem().into(),
                client_ca: j.client_ca.cert_pem().into(),
                ..Default::default()
            })
        }
        Err(e) => refuse(StatusCode::FORBIDDEN, e.to_string()),
    }
}

async fn serving_kubelet(State(j): State<Arc<Join>>, headers: HeaderMap, body: Bytes) -> Reply {
    let req = match admit(&j, &headers, &body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut names = vec![req.node.clone(), "localhost".to_string()];
    names.extend(req.ips.iter().map(|ip| ip.to_string()));
    let sans = match SubjectAltNames::parse(&names) {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let now = OffsetDateTime::now_utc();
    match rkube_pki::certs::issue_serving_cert(&j.server_ca, &sans, time::Duration::days(365), now)
    {
        Ok(ck) => json(&JoinResponse {
            cert: ck.cert_pem,
            key: ck.key_pem,
            server_ca: j.server_ca.cert_pem().into(),
            client_ca: j.client_ca.cert_pem().into(),
        }),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
