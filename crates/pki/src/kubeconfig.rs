//! Kubeconfig files with embedded credentials.
//!
//! Upstream counterpart: client-go `tools/clientcmd/api/v1` (the file
//! format) and k3s's `writeKubeConfig`, which writes the admin kubeconfig
//! with the CA and client certificate inlined as base64
//! `*-data` fields, readable by the owner only.
//!
//! Every scalar is written as a JSON string, which is also a YAML
//! double-quoted scalar: no user-supplied name or URL can break the
//! document, and no YAML library is needed to produce it.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::files;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] files::Error),
    #[error("kubeconfig server URL {0:?} must start with https://")]
    ServerUrl(String),
}

/// What goes into a kubeconfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeconfigSpec<'a> {
    pub server_url: &'a str,
    pub ca_pem: &'a str,
    pub client_cert_pem: &'a str,
    pub client_key_pem: &'a str,
    /// Names of the cluster, the user and the context (k3s: `default`).
    pub cluster_name: &'a str,
    pub user: &'a str,
}

impl<'a> KubeconfigSpec<'a> {
    /// A spec with k3s's names: cluster, user and context `default`.
    pub fn new(
        server_url: &'a str,
        ca_pem: &'a str,
        client_cert_pem: &'a str,
        client_key_pem: &'a str,
    ) -> Self {
        KubeconfigSpec {
            server_url,
            ca_pem,
            client_cert_pem,
            client_key_pem,
            cluster_name: "default",
            user: "default",
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn b64(s: &str) -> String {
    quote(&STANDARD.encode(s.as_bytes()))
}

/// Renders the kubeconfig as YAML. The context takes the cluster's name.
pub fn kubeconfig(spec: &KubeconfigSpec<'_>) -> Result<String, Error> {
    if !spec.server_url.starts_with("https://") {
        return Err(Error::ServerUrl(spec.server_url.to_owned()));
    }
    let cluster = quote(spec.cluster_name);
    let user = quote(spec.user);
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
contexts:
- name: {cluster}
  context:
    cluster: {cluster}
    user: {user}
current-context: {cluster}
preferences: {{}}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        server = quote(spec.server_url),
        ca = b64(spec.ca_pem),
        cert = b64(spec.client_cert_pem),
        key = b64(spec.client_key_pem),
    ))
}

/// Renders and writes the kubeconfig to `path` with mode 0600, creating
/// parent directories.
pub fn write_kubeconfig(path: &Path, spec: &KubeconfigSpec<'_>) -> Result<(), Error> {
    let text = kubeconfig(spec)?;
    files::write_atomic(path, text.as_bytes(), files::PRIVATE)?;
    Ok(())
}
