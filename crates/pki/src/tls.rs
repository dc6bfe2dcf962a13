//! rustls configurations for the apiserver and its in-process clients.
//!
//! Upstream counterpart: the apiserver's `SecureServingInfo` with
//! `tls.VerifyClientCertIfGiven` (`k8s.io/apiserver/pkg/server`), and
//! client-go's `transport.TLSConfigFor`. A client may connect without a
//! certificate (it may authenticate with a bearer token instead); one that
//! presents a certificate must present one that chains to a client CA, or
//! the handshake fails, as in Go.
//!
//! Every config is built on the *ring* provider explicitly, so it works
//! whether or not a process default was installed.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::{self, CertKey, Identity};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: &'static str },
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("building TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("building client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("reading peer certificate: {0}")]
    Peer(#[from] certs::Error),
}

/// The *ring* provider every config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cert_chain(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            what,
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate { what });
    }
    Ok(chain)
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::Pem {
        what,
        reason: e.to_string(),
    })
}

fn roots(pems: &[&str], what: &'static str) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for pem in pems {
        for cert in cert_chain(pem, what)? {
            store.add(cert)?;
        }
    }
    Ok(store)
}

/// Server config presenting `serving` (certificate chain and key).
/// Client certificates are optional; when given they must chain to one of
/// `client_ca_pems`. With no client CAs, client certificates are not
/// requested at all. ALPN offers HTTP/2 and HTTP/1.1, as kube-apiserver.
pub fn server_config(serving: &CertKey, client_ca_pems: &[&str]) -> Result<ServerConfig, Error> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if client_ca_pems.is_empty() {
        builder.with_no_client_auth()
    } else {
        let store = roots(client_ca_pems, "client CA")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
            .allow_unauthenticated()
            .build()?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_single_cert(
        cert_chain(&serving.cert_pem, "serving certificate")?,
        private_key(&serving.key_pem, "serving key")?,
    )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Client config trusting only `server_ca_pem` and, when given,
/// presenting `client` as its certificate.
pub fn client_config(server_ca_pem: &str, client: Option<&CertKey>) -> Result<ClientConfig, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&[server_ca_pem], "server CA")?);
    Ok(match client {
        Some(pair) => builder.with_client_auth_cert(
            cert_chain(&pair.cert_pem, "client certificate")?,
            private_key(&pair.key_pem, "client key")?,
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// A server-certificate verifier that accepts any certificate while still
/// checking the handshake's signatures. Only for peers whose identity is
/// established another way: the API server calling kubelets (as upstream
/// does without --kubelet-certificate-authority), and an agent's first
/// contact, whose CA the join token's hash then checks.
#[derive(Debug)]
pub struct UnverifiedServer(Arc<CryptoProvider>);

impl UnverifiedServer {
    pub fn new() -> Arc<UnverifiedServer> {
        Arc::new(UnverifiedServer(provider()))
    }
}

impl rustls::client::danger::ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The identity in a verified peer chain (as returned by rustls'
/// `peer_certificates()` after the handshake), or `None` when the client
/// presented no certificate. Only call this with chains the config above
/// verified: the certificate is read, not checked again.
pub fn peer_identity(peer: Option<&[CertificateDer<'_>]>) -> Result<Option<Identity>, Error> {
    match peer.and_then(|chain| chain.first()) {
        Some(leaf) => Ok(Some(certs::identity(leaf)?)),
        None => Ok(None),
    }
}
