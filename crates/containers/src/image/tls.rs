//! TLS client settings per registry host, built on rustls with the ring
//! provider.
//!
//! Upstream counterpart: containerd's `hosts.toml` TLS options as k3s fills
//! them from registries.yaml (`ca_file`, `cert_file`/`key_file`,
//! `insecure_skip_verify`). The provider is passed explicitly instead of
//! relying on a process-wide default, so linking this crate never changes
//! what other rustls users in the binary see.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::registries::TlsConfig;

/// Errors from assembling a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read TLS {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
}

fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    // Unreadable system certificates are skipped, as every TLS client does;
    // registries with private CAs name theirs via ca_file.
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn pem_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(rustls::pki_types::pem::Error) -> Error + 'a {
    move |e| Error::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A client config for one registry host.
pub fn client_config(tls: Option<&TlsConfig>) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let tls = tls.cloned().unwrap_or_default();
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(native_roots().iter().cloned());
        if let Some(ca) = &tls.ca_file {
            for cert in CertificateDer::pem_file_iter(ca).map_err(pem_err("ca_file", ca))? {
                roots.add(cert.map_err(pem_err("ca_file", ca))?)?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(pem_err("cert_file", cert))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem_err("cert_file", cert))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err("key_file", key))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// `insecure_skip_verify`: any certificate is accepted, but handshake
/// signatures are still checked so the connection is at least encrypted to
/// whoever holds the presented key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_and_bad_ca_files_are_errors() {
        assert!(client_config(None).is_ok());
        let insecure = TlsConfig {
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert!(client_config(Some(&insecure)).is_ok());
        let missing = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = client_config(Some(&missing)).unwrap_err();
        assert!(
            err.to_string().contains("ca_file /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
