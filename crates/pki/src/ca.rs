//! Certificate authorities: created once, then loaded on every start.
//!
//! Upstream counterpart: k3s `pkg/daemons/control/deps` (`genCA`,
//! `createSigningCertKey`) and client-go `util/cert.NewSelfSignedCACert`.
//! Like k3s the cluster keeps separate CAs for serving certificates
//! (`server-ca`), client certificates (`client-ca`) and the front proxy
//! (`request-header-ca`), so a client certificate can never pass as a
//! server and vice versa.
//!
//! A CA is never regenerated behind the user's back: every certificate and
//! kubeconfig in the cluster chains to it. Half a CA on disk (a cert without
//! its key or the reverse) is an error, not a reason to start over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use crate::files;

/// How long a generated CA is valid; k3s uses ten years too.
pub const CA_VALIDITY: time::Duration = time::Duration::days(3650);

/// Certificates are back-dated this much so that a node whose clock is a
/// little behind still accepts them.
pub(crate) const BACKDATE: time::Duration = time::Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] files::Error),
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{present} exists but {missing} does not; restore it or remove both to create a new CA"
    )]
    HalfPresent { present: PathBuf, missing: PathBuf },
    #[error("{path}: the CA certificate has expired; rotate the CA")]
    Expired { path: PathBuf },
    #[error("generating CA {name}: {source}")]
    Generate { name: String, source: rcgen::Error },
}

/// Which extended key usage a leaf certificate is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    ServerAuth,
    ClientAuth,
}

/// A loaded CA: its certificate and the key that signs with it.
pub struct Ca {
    name: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads `<dir>/<name>.crt` and `<dir>/<name>.key`, or creates both
    /// when neither exists. The common name carries the creation time, as
    /// k3s does (`rkube-server-ca@1700000000`), so rotated CAs differ.
    pub fn load_or_create(dir: &Path, name: &str, now: OffsetDateTime) -> Result<Ca, Error> {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        let cert = files::read_optional(&cert_path)?;
        let key = files::read_optional(&key_path)?;
        match (cert, key) {
            (Some(cert), Some(key)) => Ca::load(name, &cert_path, &cert, &key_path, &key, now),
            (None, None) => {
                let ca = Ca::generate(name, now)?;
                files::write_atomic(&key_path, ca.key_pem().as_bytes(), files::PRIVATE)?;
                files::write_atomic(&cert_path, ca.cert_pem.as_bytes(), files::PUBLIC)?;
                Ok(ca)
            }
            (Some(_), None) => Err(Error::HalfPresent {
                present: cert_path,
                missing: key_path,
            }),
            (None, Some(_)) => Err(Error::HalfPresent {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    /// Creates a new self-signed CA in memory.
    pub fn generate(name: &str, now: OffsetDateTime) -> Result<Ca, Error> {
        let gen_err = |source| Error::Generate {
            name: name.to_owned(),
            source,
        };
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("rkube-{name}@{}", now.unix_timestamp()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(crate::certs::random_serial());
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Ca {
            name: name.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    fn load(
        name: &str,
        cert_path: &Path,
        cert_pem: &str,
        key_path: &Path,
        key_pem: &str,
        now: OffsetDateTime,
    ) -> Result<Ca, Error> {
        let corrupt = |path: &Path, reason: String| Error::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| corrupt(key_path, format!("not a usable private key: {e}")))?;
        let cert_der =
            crate::certs::parse_cert_pem(cert_pem).map_err(|reason| corrupt(cert_path, reason))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| corrupt(cert_path, format!("not a certificate: {e}")))?;
        if !x509.is_ca() {
            return Err(corrupt(cert_path, "not a CA certificate".into()));
        }
        // Certificates it signs now would be rejected by every peer; only
        // rotating the CA (a deliberate act) can help.
        if x509.validity().not_after.to_datetime() <= now {
            return Err(Error::Expired {
                path: cert_path.to_owned(),
            });
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(corrupt(
                key_path,
                format!("key does not match {}", cert_path.display()),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| corrupt(cert_path, format!("unusable CA certificate: {e}")))?;
        Ok(Ca {
            name: name.to_owned(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The file stem this CA was loaded from, e.g. `server-ca`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Checks that `leaf` chains to this CA, is valid at `at` and carries
    /// the extended key usage `usage`: the same checks a TLS peer makes.
    pub fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        usage: Usage,
        at: OffsetDateTime,
    ) -> Result<(), webpki::Error> {
        let anchor = webpki::anchor_from_trusted_cert(&self.cert_der)?;
        let cert = webpki::EndEntityCert::try_from(leaf)?;
        let usage = match usage {
            Usage::ServerAuth => webpki::KeyUsage::server_auth(),
            Usage::ClientAuth => webpki::KeyUsage::client_auth(),
        };
        let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
        let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let algs = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        cert.verify_for_usage(algs, &[anchor], &[], time, usage, None, None)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let first = Ca::load_or_create(dir.path(), "server-ca", now).unwrap();
        let second = Ca::load_or_create(dir.path(), "server-ca", now).unwrap();
        assert_eq!(first.cert_pem(), second.cert_pem());
        let (_, x509) = x509_parser::parse_x509_certificate(first.cert_der()).unwrap();
        assert!(x509.is_ca());
        let cn = x509.subject().iter_common_name().next().unwrap();
        assert!(cn.as_str().unwrap().starts_with("rkube-server-ca@"));
    }

    #[test]
    fn expired_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let then = OffsetDateTime::now_utc() - CA_VALIDITY - time::Duration::days(1);
        Ca::load_or_create(dir.path(), "server-ca", then).unwrap();
        let err =
            Ca::load_or_create(dir.path(), "server-ca", OffsetDateTime::now_utc()).unwrap_err();
        assert!(
            matches!(&err, Error::Expired { path } if path.ends_with("server-ca.crt")),
            "{err}"
        );
    }

    #[test]
    fn half_present_ca_is_an_error_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        Ca::load_or_create(dir.path(), "client-ca", now).unwrap();
        std::fs::remove_file(dir.path().join("client-ca.key")).unwrap();
        let err = Ca::load_or_create(dir.path(), "client-ca", now)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("client-ca.crt") && err.contains("client-ca.key"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        Ca::load_or_create(dir.path(), "server-ca", now).unwrap();
        std::fs::write(dir.path().join("server-ca.crt"), "garbage").unwrap();
        let err = Ca::load_or_create(dir.path(), "server-ca", now).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { path, .. } if path.ends_with("server-ca.crt")));

        let other = tempfile::tempdir().unwrap();
        Ca::load_or_create(other.path(), "server-ca", now).unwrap();
        std::fs::write(
            dir.path().join("server-ca.crt"),
            std::fs::read(other.path().join("server-ca.crt")).unwrap(),
        )
        .unwrap();
        let err = Ca::load_or_create(dir.path(), "server-ca", now).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { path, reason } if path.ends_with("server-ca.key") && reason.contains("does not match")),
            "{err}"
        );

        std::fs::write(
            dir.path().join("server-ca.key"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = Ca::load_or_create(dir.path(), "server-ca", now).unwrap_err();
        assert!(err.to_string().contains("server-ca.key"), "{err}");
    }
}
