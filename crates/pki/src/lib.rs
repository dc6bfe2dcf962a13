//! The cluster's public key infrastructure: CAs, serving and client
//! certificates, kubeconfigs, join tokens and service account tokens.
//!
//! Upstream counterparts: k3s `pkg/daemons/control/deps` (what is generated
//! on first start and under which file names), client-go `util/cert` and
//! `tools/clientcmd`, kubeadm's certificate phases, k3s
//! `pkg/clientaccess` (join tokens) and kube-apiserver's
//! `pkg/serviceaccount` (service account JWTs).
//!
//! Cryptography comes from *ring* only, through rcgen, rustls and
//! rustls-webpki; jsonwebtoken uses its pure-Rust backend, which is no
//! rustls provider. Linking a second rustls provider (aws-lc-rs) makes
//! rustls unable to pick a process default, so call
//! [`install_crypto_provider`] at start-up.
//!
//! Functions that depend on the time take it as a parameter (`*_at` or a
//! `now` argument); the plain forms read the system clock.

pub mod ca;
pub mod certs;
pub mod csr;
pub mod files;
pub mod kubeconfig;
mod pki;
pub mod sa_token;
pub mod tls;
pub mod token;

pub use ca::{Ca, Usage};
pub use certs::{CertKey, Identity, SubjectAltNames};
pub use csr::{node_csr, sign_csr, CsrPolicy};
pub use kubeconfig::{kubeconfig, write_kubeconfig, KubeconfigSpec};
pub use pki::{first_service_ip, Error, Pki, ServingOptions, MASTERS_GROUP};
pub use sa_token::{Claims, SaKey, TokenSpec};
pub use token::{load_or_create_token, Token};

/// Installs *ring* as the process-wide rustls provider. Idempotent: a
/// provider already installed (by an earlier call or anyone else) is kept.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
