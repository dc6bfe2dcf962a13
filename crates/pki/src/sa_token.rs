//! Service account tokens: JWTs the apiserver signs and later verifies.
//!
//! Upstream counterpart: `pkg/serviceaccount` (`claims.go`, `jwt.go`): the
//! public claims `iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` plus a
//! private `kubernetes.io` claim naming the namespace, the service account
//! and, for bound tokens, the pod, secret or node. The signing key is
//! ECDSA P-256 (ES256, which upstream accepts as well as RS256) because
//! *ring*, the one crypto provider linked into rkube, cannot generate RSA
//! keys. The key id is upstream's: base64url of the SHA-256 of the DER
//! public key, so JWKS consumers can match tokens to keys.
//!
//! Checking that the named objects still exist (pod, service account uid)
//! is the authenticator's job; this module only checks the token itself.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use ring::rand::SecureRandom;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::files;

/// The issuer upstream uses by default (`--service-account-issuer`).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Clock skew tolerated on `exp` and `nbf`, go-jose's default leeway.
pub const LEEWAY_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] files::Error),
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("generating service account key: {0}")]
    Generate(rcgen::Error),
    #[error("service account key: {0}")]
    Key(String),
    #[error("signing token: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audiences {got:?} do not include any of {expected:?}")]
    Audience {
        got: Vec<String>,
        expected: Vec<String>,
    },
}

/// A name and uid pair, the shape of every object reference in the claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// Everything a token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// RFC 7519 allows a single string here; both forms are read.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// What a TokenRequest asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub audiences: Vec<String>,
    /// Lifetime of the token (`expirationSeconds`).
    pub expiration: time::Duration,
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
}

/// The service account signing key (`service.key`) and its public half.
pub struct SaKey {
    key_pem: String,
    public_pem: String,
    public_raw: Vec<u8>,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
}

impl std::fmt::Debug for SaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SaKey {
    /// Loads the PEM key at `path`, or creates one (mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<SaKey, Error> {
        if let Some(pem) = files::read_optional(path)? {
            return SaKey::from_pem(&pem).map_err(|e| Error::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::Generate)?;
        let pem = key.serialize_pem();
        let sa = SaKey::from_pem(&pem)?;
        files::write_atomic(path, pem.as_bytes(), files::PRIVATE)?;
        Ok(sa)
    }

    /// Wraps an ECDSA P-256 private key in PKCS#8 PEM.
    pub fn from_pem(pem: &str) -> Result<SaKey, Error> {
        let key = KeyPair::from_pem(pem).map_err(|e| Error::Key(e.to_string()))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(Error::Key("only ECDSA P-256 keys are supported".into()));
        }
        let public_pem = key.public_key_pem();
        let key_pem = key.serialize_pem();
        let encoding =
            EncodingKey::from_ec_pem(key_pem.as_bytes()).map_err(|e| Error::Key(e.to_string()))?;
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes())
            .map_err(|e| Error::Key(e.to_string()))?;
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        );
        Ok(SaKey {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            key_pem,
            public_pem,
            public_raw: key.public_key_raw().to_vec(),
            encoding,
            decoding,
            issuer: DEFAULT_ISSUER.to_owned(),
        })
    }

    /// Uses `issuer` (`--service-account-issuer`) instead of the default.
    pub fn with_issuer(mut self, issuer: &str) -> SaKey {
        self.issuer = issuer.to_owned();
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The public key, SPKI PEM (`--service-account-key-file` material).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// The `kid` header of every token this key signs.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, for `/openid/v1/jwks`.
    pub fn jwk(&self) -> serde_json::Value {
        // Uncompressed point: 0x04 || x || y, 32 bytes each for P-256.
        let (x, y) = self.public_raw[1..].split_at(32);
        serde_json::json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        })
    }

    /// Signs a token for `spec`, valid from `now` for `spec.expiration`.
    pub fn issue(&self, spec: &TokenSpec, now: OffsetDateTime) -> Result<String, Error> {
        if spec.namespace.is_empty() || spec.service_account.is_empty() {
            return Err(Error::Invalid(
                "namespace and service account name are required".into(),
            ));
        }
        if spec.expiration <= time::Duration::ZERO {
            return Err(Error::Invalid("expiration must be positive".into()));
        }
        let iat = now.unix_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject(&spec.namespace, &spec.service_account),
            aud: spec.audiences.clone(),
            exp: iat + spec.expiration.whole_seconds(),
            iat,
            nbf: iat,
            jti: Some(random_uuid()),
            kubernetes: KubernetesClaims {
                namespace: spec.namespace.clone(),
                serviceaccount: ObjectRef {
                    name: spec.service_account.clone(),
                    uid: spec.service_account_uid.clone(),
                },
                pod: spec.pod.clone(),
                secret: spec.secret.clone(),
                node: spec.node.clone(),
            },
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::Sign)
    }

    /// Checks signature, issuer, audience (at least one of `audiences`),
    /// `exp`/`nbf` at `now`, and that `sub` agrees with the private claim.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[String],
        now: OffsetDateTime,
    ) -> Result<Claims, Error> {
        // Time and audience are checked below, against the injected clock
        // and with errors that say which check failed.
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.iss != self.issuer {
            return Err(Error::Invalid(format!(
                "unexpected issuer {:?}",
                claims.iss
            )));
        }
        if !claims.aud.iter().any(|a| audiences.contains(a)) {
            return Err(Error::Audience {
                got: claims.aud,
                expected: audiences.to_vec(),
            });
        }
        let t = now.unix_timestamp();
        if t > claims.exp + LEEWAY_SECONDS {
            return Err(Error::Expired);
        }
        if t + LEEWAY_SECONDS < claims.nbf {
            return Err(Error::NotYetValid);
        }
        let k = &claims.kubernetes;
        if k.namespace.is_empty() || k.serviceaccount.name.is_empty() {
            return Err(Error::Invalid(
                "kubernetes.io claim lacks namespace or service account".into(),
            ));
        }
        if claims.sub != subject(&k.namespace, &k.serviceaccount.name) {
            return Err(Error::Invalid(format!(
                "subject {:?} disagrees with the kubernetes.io claim",
                claims.sub
            )));
        }
        Ok(claims)
    }
}

/// `system:serviceaccount:<namespace>:<name>`, the user name of a token.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system random number generator failed");
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
