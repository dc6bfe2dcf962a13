//! The kubelet API's TLS identity when no server signed one: a CA of the
//! agent's own and a serving certificate for the node's name and address,
//! kept under `<data-dir>/agent/tls` (upstream's kubelet likewise makes a
//! self-signed `kubelet.crt` when not given one).

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use rkube_pki::{Ca, CertKey, SubjectAltNames};
use time::OffsetDateTime;

/// Loads or creates `serving-kubelet.{crt,key}` in `dir`.
pub fn self_signed_serving(dir: &Path, node: &str, ip: IpAddr) -> anyhow::Result<CertKey> {
    let (crt, key) = (
        dir.join("serving-kubelet.crt"),
        dir.join("serving-kubelet.key"),
    );
    if let (Ok(cert_pem), Ok(key_pem)) =
        (std::fs::read_to_string(&crt), std::fs::read_to_string(&key))
    {
        return Ok(CertKey { cert_pem, key_pem });
    }
    rkube_pki::files::create_dir(dir, 0o700)?;
    let now = OffsetDateTime::now_utc();
    let ca = Ca::load_or_create(dir, "kubelet-ca", now).context("kubelet CA")?;
    let mut names = vec![
        node.to_string(),
        ip.to_string(),
        "localhost".into(),
        "127.0.0.1".into(),
    ];
    names.dedup();
    let sans = SubjectAltNames::parse(&names)?;
    let cert = rkube_pki::certs::issue_serving_cert(&ca, &sans, time::Duration::days(365), now)?;
    rkube_pki::files::write_atomic(&crt, cert.cert_pem.as_bytes(), 0o644)?;
    rkube_pki::files::write_atomic(&key, cert.key_pem.as_bytes(), 0o600)?;
    Ok(cert)
}
