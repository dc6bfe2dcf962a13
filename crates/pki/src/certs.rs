//! Leaf certificates: the apiserver's serving certificate and client
//! certificates, and the checks that decide whether one on disk is reused.
//!
//! Upstream counterpart: client-go `util/cert` and k3s
//! `pkg/daemons/control/deps` (`createServerSigningCertKey`,
//! `createClientCertKey`, and its "regenerate when the SANs changed or the
//! certificate expires within 90 days" rule).

use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::ca::{Ca, Usage, BACKDATE};

/// Validity of generated leaf certificates (k3s: one year).
pub const LEAF_VALIDITY: time::Duration = time::Duration::days(365);

/// A certificate is regenerated when it expires sooner than this.
pub const RENEW_BEFORE: time::Duration = time::Duration::days(90);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid subject alternative name {0:?}: neither an IP address nor a DNS name")]
    InvalidSan(String),
    #[error("a client certificate needs a common name")]
    EmptyCommonName,
    #[error("at most two organizations fit in one certificate, got {0}")]
    TooManyOrganizations(usize),
    #[error("validity must be positive")]
    InvalidValidity,
    #[error("issuing {what}: {source}")]
    Issue {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("parsing certificate: {0}")]
    Parse(String),
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Who a client certificate says its holder is: Kubernetes reads the user
/// name from the subject CN and the groups from the O attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub common_name: String,
    pub organizations: Vec<String>,
}

/// Subject alternative names split into DNS names and IP addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectAltNames {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl SubjectAltNames {
    /// Sorts mixed strings into IPs and DNS names, as `--tls-san` accepts
    /// both. DNS names are compared lower-case, as TLS clients do.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<SubjectAltNames, Error> {
        let mut out = SubjectAltNames::default();
        for name in names {
            out.insert(name.as_ref())?;
        }
        Ok(out)
    }

    pub fn insert(&mut self, name: &str) -> Result<(), Error> {
        let name = name.trim();
        if let Ok(ip) = name.parse::<IpAddr>() {
            self.ips.insert(ip);
        } else if !name.is_empty()
            && rustls_pki_types::DnsName::try_from(name).is_ok()
            && rcgen::string::Ia5String::try_from(name).is_ok()
        {
            self.dns.insert(name.to_ascii_lowercase());
        } else {
            return Err(Error::InvalidSan(name.to_owned()));
        }
        Ok(())
    }

    /// Whether every name in `other` is also in `self`.
    pub fn covers(&self, other: &SubjectAltNames) -> bool {
        other.dns.is_subset(&self.dns) && other.ips.is_subset(&self.ips)
    }

    fn to_rcgen(&self) -> Result<Vec<SanType>, Error> {
        let dns = self.dns.iter().map(|d| {
            rcgen::string::Ia5String::try_from(d.as_str())
                .map(SanType::DnsName)
                .map_err(|_| Error::InvalidSan(d.clone()))
        });
        let ips = self.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip)));
        dns.chain(ips).collect()
    }
}

/// A random positive 128-bit serial number, as RFC 5280 recommends; rcgen
/// would otherwise derive it from the public key, so two certificates for
/// one key would share a serial.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator failed");
    // Positive and with a fixed length: clear the sign bit, set the next.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// The first certificate of a PEM bundle, DER.
pub(crate) fn parse_cert_pem(pem: &str) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("no PEM certificate found: {e}"))
}

fn leaf_params(
    now: OffsetDateTime,
    validity: time::Duration,
    eku: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, Error> {
    if validity <= time::Duration::ZERO {
        return Err(Error::InvalidValidity);
    }
    let mut params = CertificateParams::default();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Puts CN and O attributes into `params`. rcgen keeps one value per
/// attribute type, so a second organization travels under the same OID
/// spelled as a custom type; more than two cannot be expressed.
pub(crate) fn set_subject(
    params: &mut CertificateParams,
    common_name: &str,
    organizations: &[String],
) -> Result<(), Error> {
    if common_name.is_empty() {
        return Err(Error::EmptyCommonName);
    }
    if organizations.len() > 2 {
        return Err(Error::TooManyOrganizations(organizations.len()));
    }
    let types = [
        DnType::OrganizationName,
        DnType::CustomDnType(vec![2, 5, 4, 10]),
    ];
    for (ty, org) in types.into_iter().zip(organizations) {
        params.distinguished_name.push(ty, org.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    Ok(())
}

/// Issues the apiserver's serving certificate for `sans`, signed by `ca`.
pub fn issue_serving_cert(
    ca: &Ca,
    sans: &SubjectAltNames,
    validity: time::Duration,
    now: OffsetDateTime,
) -> Result<CertKey, Error> {
    let mut params = leaf_params(now, validity, ExtendedKeyUsagePurpose::ServerAuth)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.subject_alt_names = sans.to_rcgen()?;
    sign(ca, params, "serving certificate")
}

/// Issues a client certificate `CN=<common_name>, O=<organizations>`
/// signed by `ca` (the client CA).
pub fn issue_client_cert(
    ca: &Ca,
    common_name: &str,
    organizations: &[String],
    validity: time::Duration,
    now: OffsetDateTime,
) -> Result<CertKey, Error> {
    let mut params = leaf_params(now, validity, ExtendedKeyUsagePurpose::ClientAuth)?;
    set_subject(&mut params, common_name, organizations)?;
    sign(ca, params, "client certificate")
}

fn sign(ca: &Ca, params: CertificateParams, what: &'static str) -> Result<CertKey, Error> {
    let issue_err = |source| Error::Issue { what, source };
    let key = KeyPair::generate().map_err(issue_err)?;
    let cert = params.signed_by(&key, ca.issuer()).map_err(issue_err)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Builds the parameters of a CSR-signed client certificate; see `csr`.
pub(crate) fn client_params(
    common_name: &str,
    organizations: &[String],
    validity: time::Duration,
    now: OffsetDateTime,
) -> Result<CertificateParams, Error> {
    let mut params = leaf_params(now, validity, ExtendedKeyUsagePurpose::ClientAuth)?;
    set_subject(&mut params, common_name, organizations)?;
    Ok(params)
}

/// Reads CN and every O from a certificate's subject.
pub fn identity(cert: &CertificateDer<'_>) -> Result<Identity, Error> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| Error::Parse(e.to_string()))?;
    name_identity(x509.subject())
}

pub(crate) fn name_identity(name: &x509_parser::x509::X509Name<'_>) -> Result<Identity, Error> {
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_owned)
            .map_err(|e| Error::Parse(format!("subject attribute is not a string: {e}")))
    };
    let common_name = match name.iter_common_name().next() {
        Some(attr) => text(attr)?,
        None => String::new(),
    };
    let organizations = name
        .iter_organization()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Identity {
        common_name,
        organizations,
    })
}

/// The SANs a certificate carries.
pub fn cert_sans(cert: &CertificateDer<'_>) -> Result<SubjectAltNames, Error> {
    use x509_parser::extensions::GeneralName;
    let (_, x509) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| Error::Parse(e.to_string()))?;
    let mut out = SubjectAltNames::default();
    let ext = x509
        .subject_alternative_name()
        .map_err(|e| Error::Parse(e.to_string()))?;
    for name in ext.iter().flat_map(|e| e.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => {
                out.dns.insert(d.to_ascii_lowercase());
            }
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    out.ips.insert(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    out.ips.insert(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Why a certificate on disk cannot be kept, or `None` when it can: it
/// must parse, match its key, chain to `ca` for `usage`, cover `sans`
/// and stay valid for longer than [`RENEW_BEFORE`].
pub fn renewal_reason(
    ca: &Ca,
    pair: &CertKey,
    usage: Usage,
    sans: Option<&SubjectAltNames>,
    now: OffsetDateTime,
) -> Option<String> {
    let der = match parse_cert_pem(&pair.cert_pem) {
        Ok(der) => der,
        Err(e) => return Some(e),
    };
    let key = match KeyPair::from_pem(&pair.key_pem) {
        Ok(key) => key,
        Err(e) => return Some(format!("unusable key: {e}")),
    };
    let x509 = match x509_parser::parse_x509_certificate(&der) {
        Ok((_, x509)) => x509,
        Err(e) => return Some(format!("unparsable certificate: {e}")),
    };
    if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Some("key does not match certificate".into());
    }
    if let Err(e) = ca.verify(&der, usage, now) {
        return Some(format!("not valid under the current {}: {e}", ca.name()));
    }
    if x509.validity().not_after.to_datetime() < now + RENEW_BEFORE {
        return Some("expires within 90 days".into());
    }
    if let Some(wanted) = sans {
        match cert_sans(&der) {
            Ok(have) if have.covers(wanted) => {}
            Ok(_) => return Some("subject alternative names changed".into()),
            Err(e) => return Some(e.to_string()),
        }
    }
    None
}
