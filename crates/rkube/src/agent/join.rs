//! Joining a cluster with `--server URL --token T`: fetch the server's CA
//! and check it against the token's hash, send a CSR for
//! `system:node:<name>` and get the client certificate back, get a serving
//! certificate for the kubelet API; everything is kept under
//! `<data-dir>/agent` so a restarted agent does not join again.
//!
//! Upstream counterpart: k3s's agent bootstrap (`pkg/agent/config`:
//! `getCACerts`, `getNodeNamedCrt`, `getServingCert`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rkube_pki::{CertKey, KubeconfigSpec, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::join::{JoinRequest, JoinResponse, CACERTS, CLIENT_KUBELET, SERVING_KUBELET};

/// What joining leaves behind.
pub struct Joined {
    pub kubeconfig: PathBuf,
    pub serving: CertKey,
    pub client_ca_pem: String,
}

struct Files {
    kubeconfig: PathBuf,
    serving_crt: PathBuf,
    serving_key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    fn new(root: &Path) -> Files {
        let tls = root.join("tls");
        Files {
            kubeconfig: root.join("kubelet.kubeconfig"),
            serving_crt: tls.join("serving-kubelet.crt"),
            serving_key: tls.join("serving-kubelet.key"),
            client_ca: tls.join("client-ca.crt"),
        }
    }

    fn load(&self) -> Option<Joined> {
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        self.kubeconfig.exists().then_some(())?;
        Some(Joined {
            kubeconfig: self.kubeconfig.clone(),
            serving: CertKey {
                cert_pem: read(&self.serving_crt)?,
                key_pem: read(&self.serving_key)?,
            },
            client_ca_pem: read(&self.client_ca)?,
        })
    }
}

/// Joins (or reuses an earlier join's credentials).
pub async fn join(
    server: &str,
    token: &str,
    root: &Path,
    node: &str,
    ip: IpAddr,
) -> anyhow::Result<Joined> {
    let files = Files::new(root);
    if let Some(j) = files.load() {
        return Ok(j);
    }
    let token = Token::parse(token.trim()).context("--token")?;
    let (host, port) = host_port(server)?;
    // First contact: any certificate, then the CA must match the token.
    let ca = request(&host, port, insecure_config(), "GET", CACERTS, None, b"").await?;
    token
        .verify_ca(ca.as_bytes())
        .context("the server's CA does not match the token")?;
    let verified = Arc::new(rkube_pki::tls::client_config(&ca, None)?);
    let secret = token.to_string();
    let csr = rkube_pki::node_csr(node)?;
    let body = serde_json::to_vec(&JoinRequest {
        node: node.to_string(),
        csr: csr.cert_pem.clone(),
        ips: vec![ip],
    })?;
    let client: JoinResponse = serde_json::from_str(
        &request(
            &host,
            port,
            verified.clone(),
            "POST",
            CLIENT_KUBELET,
            Some(&secret),
            &body,
        )
        .await?,
    )?;
    let serving: JoinResponse = serde_json::from_str(
        &request(
            &host,
            port,
            verified,
            "POST",
            SERVING_KUBELET,
            Some(&secret),
            &body,
        )
        .await?,
    )?;
    rkube_pki::files::create_dir(root, 0o700)?;
    rkube_pki::files::create_dir(&root.join("tls"), 0o700)?;
    let spec = KubeconfigSpec::new(server, &ca, &client.cert, &csr.key_pem);
    rkube_pki::write_kubeconfig(&files.kubeconfig, &spec)?;
    rkube_pki::files::write_atomic(&files.serving_crt, serving.cert.as_bytes(), 0o644)?;
    rkube_pki::files::write_atomic(&files.serving_key, serving.key.as_bytes(), 0o600)?;
    rkube_pki::files::write_atomic(&files.client_ca, client.client_ca.as_bytes(), 0o644)?;
    tracing::info!(%server, %node, "joined the cluster");
    files
        .load()
        .context("credentials just written are unreadable")
}

fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("--server {url:?} must be an https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => Ok((
            h.trim_matches(['[', ']']).to_string(),
            p.parse().context("--server port")?,
        )),
        _ => Ok((authority.trim_matches(['[', ']']).to_string(), 6443)),
    }
}

/// One HTTP/1.1 request over TLS; the body of a 200 answer.
async fn request(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> anyhow::Result<String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connect to {host}:{port}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {host}:{port}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
        body.len()
    );
    if let Some(t) = bearer {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    // A server closing without TLS close_notify still delivered the body.
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{path}: malformed response"))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{path}: malformed status line"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    if code != 200 {
        bail!("{path}: {code}: {}", body.trim());
    }
    Ok(body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn insecure_config() -> Arc<rustls::ClientConfig> {
    let provider = rkube_pki::tls::provider();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(rkube_pki::tls::UnverifiedServer::new())
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            host_port("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1".into(), 6443)
        );
        assert_eq!(
            host_port("https://example.com").unwrap(),
            ("example.com".into(), 6443)
        );
        assert!(host_port("http://x:1").is_err());
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
