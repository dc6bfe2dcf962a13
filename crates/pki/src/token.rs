//! The join token agents present to the server.
//!
//! Upstream counterpart: k3s `pkg/clientaccess/token.go`. The full form is
//! `K10<sha256 of the CA bundle, hex>::<user>:<secret>`; the hash lets an
//! agent that has nothing but the token check, on first contact, that the
//! CA the server sends is the cluster's (trust on first use without the
//! "first use" risk). A short token is just the secret, for users who pick
//! their own `--token`.

use std::fmt;
use std::path::Path;

use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

use crate::files;

/// The user name of server tokens (agents join with it).
pub const SERVER_USER: &str = "server";
const PREFIX: &str = "K10";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] files::Error),
    /// The reason never includes the secret itself.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("the server's CA certificate does not match the hash in the token")]
    CaMismatch,
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Hex SHA-256 of the CA certificate bundle; absent in short tokens.
    pub ca_hash: Option<String>,
    pub username: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The full token text, `K10<hash>::<user>:<secret>` (or the bare secret).
impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ca_hash {
            Some(hash) => write!(f, "{PREFIX}{hash}::{}:{}", self.username, self.secret),
            None => f.write_str(&self.secret),
        }
    }
}

impl Token {
    /// A full server token for `ca_cert_pem` with a fresh 128-bit secret.
    pub fn generate(ca_cert_pem: &[u8]) -> Token {
        let mut bytes = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random number generator failed");
        Token {
            ca_hash: Some(ca_hash(ca_cert_pem)),
            username: SERVER_USER.to_owned(),
            secret: hex(&bytes),
        }
    }

    /// Parses the full or the short form.
    pub fn parse(text: &str) -> Result<Token, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Malformed("empty"));
        }
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Ok(Token {
                ca_hash: None,
                username: SERVER_USER.to_owned(),
                secret: text.to_owned(),
            });
        };
        let (hash, creds) = rest
            .split_once("::")
            .ok_or(Error::Malformed("missing '::' after the CA hash"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Malformed("CA hash is not 64 hex digits"));
        }
        let (username, secret) = creds
            .split_once(':')
            .ok_or(Error::Malformed("missing '<user>:' before the secret"))?;
        if username.is_empty() || secret.is_empty() {
            return Err(Error::Malformed("empty user or secret"));
        }
        Ok(Token {
            ca_hash: Some(hash.to_ascii_lowercase()),
            username: username.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// Whether `presented` carries this token's user and secret. The
    /// secret is compared in constant time; the CA hash is public and not
    /// compared (an agent may hold a short token).
    pub fn accepts(&self, presented: &Token) -> bool {
        let secret_ok: bool = self
            .secret
            .as_bytes()
            .ct_eq(presented.secret.as_bytes())
            .into();
        secret_ok && self.username == presented.username
    }

    /// For agents: checks the CA a server sent against the token's hash.
    /// A short token has no hash and accepts any CA, as in k3s.
    pub fn verify_ca(&self, ca_cert_pem: &[u8]) -> Result<(), Error> {
        match &self.ca_hash {
            Some(hash) if *hash != ca_hash(ca_cert_pem) => Err(Error::CaMismatch),
            _ => Ok(()),
        }
    }
}

/// Hex SHA-256 of the CA bundle bytes, exactly as served.
pub fn ca_hash(ca_cert_pem: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, ca_cert_pem).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the server token at `path` (k3s: `<data-dir>/server/token`) or
/// creates one (0600). A token file holding only a secret, or a hash of an
/// older CA, is rewritten in full form for the current CA with the same
/// secret, so agents that joined with it keep working.
pub fn load_or_create_token(path: &Path, ca_cert_pem: &[u8]) -> Result<Token, Error> {
    let token = match files::read_optional(path)? {
        Some(text) => {
            let mut token = Token::parse(&text)?;
            token.ca_hash = Some(ca_hash(ca_cert_pem));
            if token.to_string() == text.trim() {
                return Ok(token);
            }
            token
        }
        None => Token::generate(ca_cert_pem),
    };
    files::write_atomic(path, format!("{token}\n").as_bytes(), files::PRIVATE)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n";

    #[test]
    fn generated_token_has_k3s_shape_and_round_trips() {
        let t = Token::generate(CA);
        let text = t.to_string();
        let (hash, creds) = text.strip_prefix("K10").unwrap().split_once("::").unwrap();
        assert_eq!(hash, ca_hash(CA));
        let secret = creds.strip_prefix("server:").unwrap();
        assert_eq!(secret.len(), 32);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(Token::parse(&text).unwrap(), t);
        assert_ne!(Token::generate(CA).to_string(), text);
        assert!(!format!("{t:?}").contains(secret));
    }

    #[test]
    fn accepts_full_and_short_forms_and_rejects_wrong_secret() {
        let t = Token::generate(CA);
        assert!(t.accepts(&Token::parse(&t.to_string()).unwrap()));
        assert!(t.accepts(&Token::parse(&t.secret).unwrap()));
        let wrong = format!("K10{}::server:{}", ca_hash(CA), "0".repeat(32));
        assert!(!t.accepts(&Token::parse(&wrong).unwrap()));
        let other_user = format!("K10{}::node:{}", ca_hash(CA), t.secret);
        assert!(!t.accepts(&Token::parse(&other_user).unwrap()));
        assert!(!t.accepts(&Token::parse("short").unwrap()));
    }

    #[test]
    fn malformed_tokens_are_errors_without_the_secret() {
        for bad in [
            "",
            "K10abc::server:x",
            "K10",
            &format!("K10{}server:x", "a".repeat(64)),
            &format!("K10{}::nosecret", "a".repeat(64)),
            &format!("K10{}:::x", "a".repeat(64)),
        ] {
            let err = Token::parse(bad).unwrap_err();
            assert!(matches!(err, Error::Malformed(_)), "{bad:?}");
        }
    }

    #[test]
    fn ca_hash_check() {
        let t = Token::generate(CA);
        t.verify_ca(CA).unwrap();
        assert!(matches!(t.verify_ca(b"other ca"), Err(Error::CaMismatch)));
        Token::parse("short")
            .unwrap()
            .verify_ca(b"anything")
            .unwrap();
    }

    #[test]
    fn file_is_created_0600_reused_and_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server/token");
        let first = load_or_create_token(&path, CA).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(&path, CA).unwrap(), first);

        let rotated = load_or_create_token(&path, b"new ca").unwrap();
        assert_eq!(
            rotated.ca_hash.as_deref(),
            Some(ca_hash(b"new ca").as_str())
        );
        assert!(first.accepts(&rotated));
        let on_disk = std::fs::read_to_string(&path).unwrap();
        assert_eq!(on_disk.trim(), rotated.to_string());

        std::fs::write(&path, "my-own-token\n").unwrap();
        let short = load_or_create_token(&path, CA).unwrap();
        assert_eq!(
            short.to_string(),
            format!("K10{}::server:my-own-token", ca_hash(CA))
        );
    }
}
