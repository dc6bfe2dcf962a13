//! Registry credentials and the authentication challenge grammar.
//!
//! Upstream counterparts: kubelet `pkg/credentialprovider` (docker
//! config.json / .dockercfg as held by imagePullSecrets) and distribution's
//! token auth spec (`WWW-Authenticate: Bearer realm=...,service=...,scope=...`
//! answered by a GET to the realm, optionally with basic credentials). The
//! HTTP exchange itself lives in `client.rs`; this module is pure.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use super::registries::AuthConfig;

/// Errors from parsing credentials or challenges.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("parse docker config: {0}")]
    Config(#[source] serde_json::Error),
    #[error("credentials for {host}: auth field is not base64(\"user:password\")")]
    BadAuthField { host: String },
    #[error("unsupported WWW-Authenticate challenge {0:?}")]
    BadChallenge(String),
    #[error("token response from {realm} has no token")]
    NoToken { realm: String },
}

/// Username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, ***)", self.username)
    }
}

impl Credentials {
    /// Value for an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Credentials from a registries.yaml `auth` block.
    pub fn from_auth_config(host: &str, a: &AuthConfig) -> Result<Option<Credentials>, Error> {
        from_parts(
            host,
            a.username.as_deref(),
            a.password.as_deref(),
            a.auth.as_deref(),
        )
    }
}

fn from_parts(
    host: &str,
    user: Option<&str>,
    pass: Option<&str>,
    auth: Option<&str>,
) -> Result<Option<Credentials>, Error> {
    if let Some(username) = user.filter(|u| !u.is_empty()) {
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: pass.unwrap_or("").to_string(),
        }));
    }
    let Some(auth) = auth.filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let bad = || Error::BadAuthField {
        host: host.to_string(),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (u, p) = raw.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// A docker config.json (`{"auths": {host: {...}}}`) or legacy .dockercfg
/// (`{host: {...}}`), the two forms imagePullSecrets carry.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    auths: BTreeMap<String, AuthEntry>,
}

impl DockerConfig {
    pub fn parse(json: &[u8]) -> Result<DockerConfig, Error> {
        #[derive(Deserialize)]
        struct Wrapped {
            auths: BTreeMap<String, AuthEntry>,
        }
        if let Ok(w) = serde_json::from_slice::<Wrapped>(json) {
            return Ok(DockerConfig { auths: w.auths });
        }
        let auths = serde_json::from_slice(json).map_err(Error::Config)?;
        Ok(DockerConfig { auths })
    }

    /// Merges several configs (a pod's pull secrets); earlier ones win.
    pub fn merge(configs: &[DockerConfig]) -> DockerConfig {
        let mut auths = BTreeMap::new();
        for c in configs.iter().rev() {
            auths.extend(c.auths.clone());
        }
        DockerConfig { auths }
    }

    /// Credentials for a registry host. Keys may be bare hosts or URLs
    /// (`https://index.docker.io/v1/`), as `docker login` writes them.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        let want = canonical_host(registry);
        for (key, entry) in &self.auths {
            if canonical_host(key) == want {
                return from_parts(
                    key,
                    entry.username.as_deref(),
                    entry.password.as_deref(),
                    entry.auth.as_deref(),
                );
            }
        }
        Ok(None)
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://h:5000/x` → `h:5000`.
fn canonical_host(key: &str) -> String {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = key.split('/').next().unwrap_or("");
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_ascii_lowercase(),
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub fn parse(header: &str) -> Result<Challenge, Error> {
        let bad = || Error::BadChallenge(header.to_string());
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let params = parse_params(params).ok_or_else(bad)?;
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(bad());
        }
        let realm = params.get("realm").cloned().ok_or_else(bad)?;
        Ok(Challenge::Bearer {
            realm,
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// `k1="v1",k2=v2` with quoted strings that may contain commas (scopes do).
fn parse_params(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &q[end?..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.insert(key, value);
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// The token endpoint's answer; Docker Hub sends `token`, OAuth2 servers
/// `access_token`.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self, realm: &str) -> Result<String, Error> {
        self.token
            .or(self.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::NoToken {
                realm: realm.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_forms() {
        let json = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "127.0.0.1:5000":{"username":"bob","password":"pw"}}}"#;
        let cfg = DockerConfig::parse(json).unwrap();
        let hub = cfg.credentials("docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(
            cfg.credentials("127.0.0.1:5000").unwrap().unwrap().username,
            "bob"
        );
        assert!(cfg.credentials("quay.io").unwrap().is_none());
        let legacy = DockerConfig::parse(br#"{"quay.io":{"auth":"YTpi"}}"#).unwrap();
        assert_eq!(
            legacy.credentials("quay.io").unwrap().unwrap().password,
            "b"
        );
        let bad = DockerConfig::parse(br#"{"auths":{"h":{"auth":"!!!"}}}"#).unwrap();
        assert!(bad.credentials("h").is_err());
        assert!(DockerConfig::parse(b"[1]").is_err());
        assert!(!format!("{hub:?}").contains("pa:ss"));
    }

    #[test]
    fn bearer_challenges_parse() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        assert!(Challenge::parse("Bearer service=x").is_err());
        assert!(Challenge::parse("Negotiate abc").is_err());
        assert!(Challenge::parse(r#"Bearer realm="unterminated"#).is_err());
    }

    #[test]
    fn token_responses() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"x"}"#).unwrap();
        assert_eq!(t.into_token("r").unwrap(), "x");
        let t: TokenResponse = serde_json::from_str("{}").unwrap();
        assert!(t.into_token("r").is_err());
    }
}
