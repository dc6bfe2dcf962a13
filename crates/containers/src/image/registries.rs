//! Registry configuration in k3s' `/etc/rkube/registries.yaml` form:
//! `mirrors` (which endpoints serve a registry) and `configs` (auth and TLS
//! per endpoint host).
//!
//! Upstream counterpart: k3s `pkg/agent/templates` + rancher/wharfie
//! `registries.yaml`. As in k3s, plain HTTP is allowed only for an endpoint
//! written with an `http://` scheme in `mirrors`; every other endpoint,
//! including the default one, is HTTPS. The registry's own default endpoint
//! is always tried last, after its mirrors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::reference::Reference;

/// Where rkube reads registry configuration by default (k3s: /etc/rancher/k3s/registries.yaml).
pub const DEFAULT_PATH: &str = "/etc/rkube/registries.yaml";

/// Errors from loading registries.yaml.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read registries config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse registries config: {0}")]
    Parse(String),
    #[error("registry endpoint {endpoint:?} for {registry}: {reason}")]
    BadEndpoint {
        registry: String,
        endpoint: String,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Credentials for one host; `auth` is base64("user:password") as in
/// docker's config.json, used when username/password are absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to send registry API requests for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`; also the key into `configs`.
    pub host: String,
    /// API root path, `/v2` unless the endpoint URL names another path.
    pub api_root: String,
}

impl Endpoint {
    /// `scheme://host/api_root` with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.api_root)
    }

    pub fn is_plain_http(&self) -> bool {
        self.scheme == "http"
    }

    fn parse(registry: &str, raw: &str) -> Result<Endpoint, Error> {
        let bad = |reason| Error::BadEndpoint {
            registry: registry.to_string(),
            endpoint: raw.to_string(),
            reason,
        };
        let (scheme, rest) = match raw.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (s, rest),
            Some(_) => return Err(bad("scheme must be http or https")),
            // k3s treats a bare host as https.
            None => ("https", raw),
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let api_root = if path.is_empty() {
            "/v2".to_string()
        } else {
            path.to_string()
        };
        Ok(Endpoint {
            scheme: scheme.to_string(),
            host: host.to_string(),
            api_root,
        })
    }
}

impl RegistriesConfig {
    /// Reads the file; a missing file means "no mirrors, no configs", as in k3s.
    pub fn load(path: &Path) -> Result<RegistriesConfig, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => RegistriesConfig::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(source) => Err(Error::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(yaml: &str) -> Result<RegistriesConfig, Error> {
        if yaml.trim().is_empty() {
            return Ok(RegistriesConfig::default());
        }
        serde_saphyr::from_str(yaml).map_err(|e| Error::Parse(e.to_string()))
    }

    /// Endpoints to try for `reference`, in order: its mirrors (or the
    /// `"*"` mirrors when it has none), then the registry itself over HTTPS.
    pub fn endpoints(&self, reference: &Reference) -> Result<Vec<Endpoint>, Error> {
        let registry = &reference.registry;
        let mirror = self
            .mirrors
            .get(registry.as_str())
            .or_else(|| self.mirrors.get("*"));
        let mut out = Vec::new();
        for raw in mirror.map(|m| m.endpoint.as_slice()).unwrap_or_default() {
            let e = Endpoint::parse(registry, raw)?;
            if !out.contains(&e) {
                out.push(e);
            }
        }
        let default = Endpoint {
            scheme: "https".into(),
            host: reference.api_host().to_string(),
            api_root: "/v2".into(),
        };
        // The default only repeats a mirror that already is the registry.
        if !out.iter().any(|e| e.host == default.host) {
            out.push(default);
        }
        Ok(out)
    }

    /// Auth and TLS settings for an endpoint host; Docker Hub's settings
    /// may be written under either of its names.
    pub fn host_config(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host).or_else(|| match host {
            "registry-1.docker.io" => self.configs.get("docker.io"),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/v2/hub"
  "127.0.0.1:6000":
    endpoint: ["http://127.0.0.1:6000"]
configs:
  "mirror.example.com":
    auth:
      username: alice
      password: secret
    tls:
      ca_file: /etc/ssl/mirror.pem
      insecure_skip_verify: true
"#;

    #[test]
    fn mirrors_come_first_and_http_only_when_written() {
        let cfg = RegistriesConfig::parse(YAML).unwrap();
        let hub: Reference = "busybox".parse().unwrap();
        let eps = cfg.endpoints(&hub).unwrap();
        let urls: Vec<_> = eps.iter().map(Endpoint::base_url).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5000/v2",
                "https://mirror.example.com/v2/hub",
                "https://registry-1.docker.io/v2"
            ]
        );
        let local: Reference = "127.0.0.1:6000/app".parse().unwrap();
        let eps = cfg.endpoints(&local).unwrap();
        assert_eq!(eps.len(), 1);
        assert!(eps[0].is_plain_http());
        let other: Reference = "127.0.0.1:7000/app".parse().unwrap();
        assert_eq!(
            cfg.endpoints(&other).unwrap()[0].base_url(),
            "https://127.0.0.1:7000/v2"
        );
        let c = cfg.host_config("mirror.example.com").unwrap();
        assert_eq!(c.auth.as_ref().unwrap().username.as_deref(), Some("alice"));
        assert!(c.tls.as_ref().unwrap().insecure_skip_verify);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(RegistriesConfig::parse("mirrors: [1, 2]").is_err());
        let cfg =
            RegistriesConfig::parse("mirrors: {docker.io: {endpoint: [\"ftp://x\"]}}").unwrap();
        let err = cfg.endpoints(&"busybox".parse().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("scheme must be http or https"),
            "{err}"
        );
        let missing = RegistriesConfig::load(Path::new("/nonexistent/registries.yaml")).unwrap();
        assert!(missing.mirrors.is_empty());
    }
}
