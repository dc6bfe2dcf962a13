//! Signing certificate signing requests, for agents joining the cluster.
//!
//! Upstream counterpart: the kube-controller-manager's CSR signer
//! (`pkg/controller/certificates/signer`) with the approval rules of
//! `kubernetes.io/kube-apiserver-client-kubelet` (`CN=system:node:<name>`,
//! exactly `O=system:nodes`), and k3s's `/v1-k3s/client-kubelet.crt`
//! handler, which signs a node's client certificate once its join token
//! checked out.
//!
//! Only the subject and the public key are taken from a request; usages,
//! validity and extensions are the signer's, so a request cannot ask for a
//! CA or a serving certificate.

use rcgen::{CertificateParams, CertificateSigningRequestParams, DnType, KeyPair};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use crate::ca::Ca;
use crate::certs::{self, CertKey, Identity};

/// The group every kubelet client certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// The user-name prefix of kubelet client certificates.
pub const NODE_USER_PREFIX: &str = "system:node:";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid certificate signing request: {0}")]
    Invalid(String),
    #[error("certificate signing request not allowed: {0}")]
    Denied(String),
    #[error(transparent)]
    Cert(#[from] certs::Error),
    #[error("signing certificate request: {0}")]
    Sign(rcgen::Error),
}

/// What subjects a signing call accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsrPolicy {
    /// A kubelet client certificate: `CN=system:node:<name>` and exactly
    /// `O=system:nodes`. With `name`, the node name must equal it.
    Node { name: Option<String> },
    /// Any non-empty CN, with organizations only from `organizations`.
    Client { organizations: Vec<String> },
}

/// Verifies `csr_pem` (its self-signature included), checks its subject
/// against `policy` and returns a client certificate signed by `ca`.
pub fn sign_csr(
    ca: &Ca,
    csr_pem: &str,
    policy: &CsrPolicy,
    validity: time::Duration,
    now: OffsetDateTime,
) -> Result<String, Error> {
    let mut request = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let identity = requested_identity(csr_pem)?;
    check_policy(&identity, policy)?;
    let params = certs::client_params(
        &identity.common_name,
        &identity.organizations,
        validity,
        now,
    )?;
    request.params = params;
    let cert = request.signed_by(ca.issuer()).map_err(Error::Sign)?;
    Ok(cert.pem())
}

/// The subject of a CSR. rcgen's own parse keeps one value per attribute,
/// so the subject is read again here to see every O.
fn requested_identity(csr_pem: &str) -> Result<Identity, Error> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| Error::Invalid(format!("not PEM: {e}")))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| Error::Invalid(e.to_string()))?;
    certs::name_identity(&csr.certification_request_info.subject)
        .map_err(|e| Error::Invalid(e.to_string()))
}

fn check_policy(id: &Identity, policy: &CsrPolicy) -> Result<(), Error> {
    match policy {
        CsrPolicy::Node { name } => {
            let Some(node) = id.common_name.strip_prefix(NODE_USER_PREFIX) else {
                return Err(Error::Denied(format!(
                    "common name {:?} is not of the form {NODE_USER_PREFIX}<name>",
                    id.common_name
                )));
            };
            if !is_dns_subdomain(node) {
                return Err(Error::Denied(format!("{node:?} is not a valid node name")));
            }
            if let Some(expected) = name {
                if node != expected {
                    return Err(Error::Denied(format!(
                        "node {node:?} may not request a certificate for {expected:?}"
                    )));
                }
            }
            if id.organizations != [NODES_GROUP] {
                return Err(Error::Denied(format!(
                    "organizations must be exactly [{NODES_GROUP:?}], got {:?}",
                    id.organizations
                )));
            }
        }
        CsrPolicy::Client { organizations } => {
            if id.common_name.is_empty() {
                return Err(Error::Denied("empty common name".into()));
            }
            if let Some(o) = id.organizations.iter().find(|o| !organizations.contains(o)) {
                return Err(Error::Denied(format!("organization {o:?} is not allowed")));
            }
        }
    }
    Ok(())
}

/// RFC 1123 subdomain, the rule for node names (`validation.IsDNS1123Subdomain`).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Creates a key and a CSR for `CN=system:node:<name>, O=system:nodes`,
/// as an agent does before asking the server to sign it. Returns the CSR
/// PEM in `cert_pem` and the new key in `key_pem`.
pub fn node_csr(node_name: &str) -> Result<CertKey, Error> {
    let key = KeyPair::generate().map_err(Error::Sign)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, NODES_GROUP);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{NODE_USER_PREFIX}{node_name}"));
    let csr = params.serialize_request(&key).map_err(Error::Sign)?;
    Ok(CertKey {
        cert_pem: csr.pem().map_err(Error::Sign)?,
        key_pem: key.serialize_pem(),
    })
}
