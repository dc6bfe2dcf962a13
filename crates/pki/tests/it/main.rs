//! Behaviour tests of the PKI with real cryptography: chains are checked
//! with rustls-webpki, handshakes run over loopback, kubeconfigs are read
//! by the real kubectl.

mod certs;
mod csr;
mod kubectl;
mod pki;
mod sa_token;
mod tls;

use rkube_pki::Ca;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn test_ca(name: &str) -> Ca {
    Ca::generate(name, now()).unwrap()
}

pub fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The apiserver shares these across request handlers.
#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<rkube_pki::Pki>();
    check::<rkube_pki::SaKey>();
    check::<rkube_pki::Token>();
}
