//! The server's PKI directory (`<data-dir>/server/tls`) as one value.
//!
//! Upstream counterpart: k3s `pkg/daemons/control/deps` (`genCerts`,
//! `genServerCerts`, `genClientCerts`, `genServiceAccount`) and the file
//! names it uses, so that people who know k3s find their way:
//!
//! | file | what |
//! | --- | --- |
//! | `server-ca.crt/key` | CA of serving certificates |
//! | `client-ca.crt/key` | CA of client certificates |
//! | `request-header-ca.crt/key` | front-proxy CA (optional) |
//! | `serving-kube-apiserver.crt/key` | the apiserver's serving certificate |
//! | `client-admin.crt/key` | `CN=admin, O=system:masters` |
//! | `client-auth-proxy.crt/key` | front-proxy client (with the request-header CA) |
//! | `client-<name>.crt/key` | other component identities, see [`Pki::client_cert`] |
//! | `service.key` | service account token signing key |

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::ca::{self, Ca, Usage};
use crate::certs::{self, CertKey, SubjectAltNames, LEAF_VALIDITY};
use crate::csr::{self, CsrPolicy};
use crate::files;
use crate::kubeconfig::{self, KubeconfigSpec};
use crate::sa_token::{self, SaKey};

/// The group whose members are cluster-admin by the default RBAC bindings.
pub const MASTERS_GROUP: &str = "system:masters";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ca(#[from] ca::Error),
    #[error(transparent)]
    File(#[from] files::Error),
    #[error(transparent)]
    Csr(#[from] csr::Error),
    #[error(transparent)]
    ServiceAccountKey(#[from] sa_token::Error),
    #[error("{path}: {source}")]
    Cert { path: PathBuf, source: certs::Error },
    #[error("invalid service CIDR {0:?}")]
    InvalidServiceCidr(String),
}

/// What the serving certificate must cover, beyond the names every
/// apiserver answers to (`localhost`, `kubernetes`, `kubernetes.default`,
/// `kubernetes.default.svc`, `kubernetes.default.svc.<domain>`, 127.0.0.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingOptions {
    /// Hostname, node IPs and every `--tls-san`, DNS names and IPs mixed.
    pub sans: Vec<String>,
    /// The `kubernetes` Service's ClusterIP: the first IP of the service
    /// CIDR (see [`first_service_ip`]).
    pub service_ip: IpAddr,
    pub cluster_domain: String,
    /// Create the front-proxy CA and its client certificate.
    pub request_header_ca: bool,
}

impl Default for ServingOptions {
    fn default() -> Self {
        ServingOptions {
            sans: Vec::new(),
            service_ip: IpAddr::from([10, 43, 0, 1]),
            cluster_domain: "cluster.local".into(),
            request_header_ca: false,
        }
    }
}

impl ServingOptions {
    /// The complete set of names the serving certificate must carry.
    pub fn required_sans(&self) -> Result<SubjectAltNames, certs::Error> {
        let mut sans = SubjectAltNames::parse(&self.sans)?;
        for fixed in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ] {
            sans.insert(fixed)?;
        }
        sans.insert(&format!("kubernetes.default.svc.{}", self.cluster_domain))?;
        sans.ips.insert(IpAddr::from([127, 0, 0, 1]));
        sans.ips.insert(self.service_ip);
        Ok(sans)
    }
}

/// The first address of a CIDR such as `10.43.0.0/16` (`10.43.0.1`), which
/// Kubernetes gives to the `kubernetes` Service.
pub fn first_service_ip(cidr: &str) -> Result<IpAddr, Error> {
    let bad = || Error::InvalidServiceCidr(cidr.to_owned());
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    match addr {
        IpAddr::V4(v4) if prefix < 31 => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            Ok(IpAddr::from(std::net::Ipv4Addr::from(
                (u32::from(v4) & mask) + 1,
            )))
        }
        IpAddr::V6(v6) if prefix < 127 => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            Ok(IpAddr::from(std::net::Ipv6Addr::from(
                (u128::from(v6) & mask) + 1,
            )))
        }
        _ => Err(bad()),
    }
}

/// CAs, keys and certificates of one server, loaded or created.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    server_ca: Ca,
    client_ca: Ca,
    request_header_ca: Option<Ca>,
    serving: CertKey,
    admin: CertKey,
    auth_proxy: Option<CertKey>,
    sa_key: SaKey,
}

impl Pki {
    /// Loads the PKI under `dir`, creating what is missing and renewing
    /// leaf certificates that expire within 90 days, no longer chain to
    /// their CA, or (the serving certificate) miss a requested name.
    pub fn load_or_create(dir: &Path, opts: &ServingOptions) -> Result<Pki, Error> {
        Pki::load_or_create_at(dir, opts, OffsetDateTime::now_utc())
    }

    /// [`Pki::load_or_create`] with the current time as a parameter.
    pub fn load_or_create_at(
        dir: &Path,
        opts: &ServingOptions,
        now: OffsetDateTime,
    ) -> Result<Pki, Error> {
        files::create_dir(dir, 0o700)?;
        let server_ca = Ca::load_or_create(dir, "server-ca", now)?;
        let client_ca = Ca::load_or_create(dir, "client-ca", now)?;
        let request_header_ca = match opts.request_header_ca {
            true => Some(Ca::load_or_create(dir, "request-header-ca", now)?),
            false => None,
        };

        let serving_path = dir.join("serving-kube-apiserver.crt");
        let sans = opts.required_sans().map_err(|source| Error::Cert {
            path: serving_path,
            source,
        })?;
        let serving = ensure_leaf(
            dir,
            "serving-kube-apiserver",
            &server_ca,
            Usage::ServerAuth,
            Some(&sans),
            now,
            |now| certs::issue_serving_cert(&server_ca, &sans, LEAF_VALIDITY, now),
        )?;
        let admin = client_leaf(dir, &client_ca, "admin", "admin", &[MASTERS_GROUP], now)?;
        let auth_proxy = match &request_header_ca {
            Some(ca) => Some(client_leaf(
                dir,
                ca,
                "auth-proxy",
                "system:auth-proxy",
                &[],
                now,
            )?),
            None => None,
        };
        let sa_key = SaKey::load_or_create(&dir.join("service.key"))?;
        Ok(Pki {
            dir: dir.to_owned(),
            server_ca,
            client_ca,
            request_header_ca,
            serving,
            admin,
            auth_proxy,
            sa_key,
        })
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn server_ca(&self) -> &Ca {
        &self.server_ca
    }

    pub fn client_ca(&self) -> &Ca {
        &self.client_ca
    }

    pub fn request_header_ca(&self) -> Option<&Ca> {
        self.request_header_ca.as_ref()
    }

    /// The apiserver's serving certificate and key.
    pub fn serving(&self) -> &CertKey {
        &self.serving
    }

    /// The admin client certificate (`CN=admin, O=system:masters`).
    pub fn admin(&self) -> &CertKey {
        &self.admin
    }

    /// The front-proxy client certificate, with the request-header CA.
    pub fn auth_proxy(&self) -> Option<&CertKey> {
        self.auth_proxy.as_ref()
    }

    /// The service account token signing key (`service.key`).
    pub fn service_account_key(&self) -> &SaKey {
        &self.sa_key
    }

    /// Writes the admin kubeconfig (k3s: `/etc/rancher/k3s/k3s.yaml`, ours
    /// `/etc/rkube/rkube.yaml`) for `server_url`, mode 0600.
    pub fn write_admin_kubeconfig(
        &self,
        path: &Path,
        server_url: &str,
    ) -> Result<(), kubeconfig::Error> {
        let admin = self.admin();
        let spec = KubeconfigSpec::new(
            server_url,
            self.server_ca.cert_pem(),
            &admin.cert_pem,
            &admin.key_pem,
        );
        kubeconfig::write_kubeconfig(path, &spec)
    }

    /// Issues a fresh client certificate signed by the client CA; nothing
    /// is written to disk.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[String],
        validity: time::Duration,
    ) -> Result<CertKey, certs::Error> {
        let now = OffsetDateTime::now_utc();
        certs::issue_client_cert(&self.client_ca, common_name, organizations, validity, now)
    }

    /// Signs a client CSR with the client CA after checking it against
    /// `policy`; for node joins use [`CsrPolicy::Node`].
    pub fn sign_csr(&self, csr_pem: &str, policy: &CsrPolicy) -> Result<String, csr::Error> {
        let now = OffsetDateTime::now_utc();
        csr::sign_csr(&self.client_ca, csr_pem, policy, LEAF_VALIDITY, now)
    }

    /// Loads or creates `client-<stem>.crt/key` for an in-process
    /// component (e.g. `controller` as `system:kube-controller-manager`),
    /// renewed by the same rules as the admin certificate.
    pub fn client_cert(
        &self,
        stem: &str,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<CertKey, Error> {
        let now = OffsetDateTime::now_utc();
        client_leaf(
            &self.dir,
            &self.client_ca,
            stem,
            common_name,
            organizations,
            now,
        )
    }
}

fn client_leaf(
    dir: &Path,
    ca: &Ca,
    stem: &str,
    common_name: &str,
    organizations: &[&str],
    now: OffsetDateTime,
) -> Result<CertKey, Error> {
    let orgs: Vec<String> = organizations.iter().map(|o| o.to_string()).collect();
    ensure_leaf(
        dir,
        &format!("client-{stem}"),
        ca,
        Usage::ClientAuth,
        None,
        now,
        |now| certs::issue_client_cert(ca, common_name, &orgs, LEAF_VALIDITY, now),
    )
}

/// Reuses `<dir>/<stem>.crt/key` unless [`certs::renewal_reason`] finds a
/// reason not to, in which case `issue` makes a new pair that is written
/// back (key first, so a crash in between leaves a pair that is renewed
/// again rather than a certificate without its key).
fn ensure_leaf(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    usage: Usage,
    sans: Option<&SubjectAltNames>,
    now: OffsetDateTime,
    issue: impl FnOnce(OffsetDateTime) -> Result<CertKey, certs::Error>,
) -> Result<CertKey, Error> {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    let existing = match (
        files::read_optional(&cert_path)?,
        files::read_optional(&key_path)?,
    ) {
        (Some(cert_pem), Some(key_pem)) => Some(CertKey { cert_pem, key_pem }),
        _ => None,
    };
    if let Some(pair) = existing {
        match certs::renewal_reason(ca, &pair, usage, sans, now) {
            None => return Ok(pair),
            Some(reason) => {
                tracing::info!(file = %cert_path.display(), %reason, "renewing certificate")
            }
        }
    }
    let pair = issue(now).map_err(|source| Error::Cert {
        path: cert_path.clone(),
        source,
    })?;
    files::write_atomic(&key_path, pair.key_pem.as_bytes(), files::PRIVATE)?;
    files::write_atomic(&cert_path, pair.cert_pem.as_bytes(), files::PUBLIC)?;
    Ok(pair)
}
