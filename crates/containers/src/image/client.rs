//! OCI distribution API v2 client: manifests, blobs, uploads, with the
//! anonymous-token, bearer and basic authentication flows.
//!
//! Upstream counterpart: containerd `remotes/docker` (resolver, fetcher,
//! pusher, authorizer). A [`Repository`] is one repository on one endpoint;
//! it answers a 401 once by following the `WWW-Authenticate` challenge and
//! then reuses the resulting `Authorization` header for the session.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{header, Method, RequestBuilder, Response, StatusCode};

use super::auth::{self, Challenge, Credentials, DockerConfig, TokenResponse};
use super::content::{self, ContentStore};
use super::oci::{self, Descriptor, Digest};
use super::reference::Reference;
use super::registries::{self, Endpoint, RegistriesConfig};
use super::tls;

/// Manifests larger than this are refused (containerd uses the same cap).
const MANIFEST_LIMIT: usize = 4 << 20;
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Errors from talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{method} {url}: {detail}")]
    Http {
        method: Method,
        url: String,
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: unauthorized ({status}): the repository may not exist, or the credentials are missing or wrong")]
    Unauthorized {
        method: Method,
        url: String,
        status: StatusCode,
    },
    #[error("{what} not found at {url}")]
    NotFound { what: String, url: String },
    #[error("{method} {url}: unexpected status {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("manifest from {url} is larger than {MANIFEST_LIMIT} bytes")]
    ManifestTooLarge { url: String },
    #[error("upload to {url}: registry sent no Location header")]
    NoLocation { url: String },
    #[error("bearer token realm {realm:?} is not https while the registry is")]
    InsecureRealm { realm: String },
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Content(#[from] content::Error),
    #[error(transparent)]
    Registries(#[from] registries::Error),
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("blob writer task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn http_err<'a>(
    method: &Method,
    url: &'a str,
    https: bool,
) -> impl FnOnce(reqwest::Error) -> Error + 'a {
    let method = method.clone();
    move |source| {
        let mut detail = source.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&source);
        while let Some(e) = cur {
            detail.push_str(": ");
            detail.push_str(&e.to_string());
            cur = e.source();
        }
        if https && source.is_connect() {
            detail.push_str(" (plain-HTTP registries must be listed with an http:// endpoint in registries.yaml)");
        }
        Error::Http {
            method,
            url: url.to_string(),
            detail,
            source,
        }
    }
}

/// Transfer counters, so callers (and tests) can see what a pull cost.
#[derive(Debug, Default)]
pub struct Stats {
    pub manifest_requests: AtomicU64,
    pub blob_downloads: AtomicU64,
    pub blob_bytes: AtomicU64,
}

/// Registry client shared by all pulls and pushes: one HTTP connection
/// pool per endpoint host (each host may have its own TLS settings).
pub struct Client {
    registries: RegistriesConfig,
    pools: Mutex<HashMap<String, reqwest::Client>>,
    stats: Arc<Stats>,
}

impl Client {
    pub fn new(registries: RegistriesConfig) -> Client {
        Client {
            registries,
            pools: Mutex::new(HashMap::new()),
            stats: Arc::new(Stats::default()),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn pool(&self, host: &str) -> Result<reqwest::Client, Error> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = pools.get(host) {
            return Ok(c.clone());
        }
        let tls = tls::client_config(
            self.registries
                .host_config(host)
                .and_then(|c| c.tls.as_ref()),
        )?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("rkube/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(http_err(&Method::GET, host, false))?;
        pools.insert(host.to_string(), client.clone());
        Ok(client)
    }

    /// One [`Repository`] per endpoint that may serve `reference`, in the
    /// order to try them. `push` asks for push scope in token requests.
    pub fn repositories(
        &self,
        reference: &Reference,
        pull_secret: Option<&DockerConfig>,
        push: bool,
    ) -> Result<Vec<Repository>, Error> {
        let mut out = Vec::new();
        for endpoint in self.registries.endpoints(reference)? {
            let mut credentials = None;
            if let Some(secret) = pull_secret {
                credentials = secret.credentials(&endpoint.host)?;
                if credentials.is_none() && endpoint.host == reference.api_host() {
                    credentials = secret.credentials(&reference.registry)?;
                }
            }
            if credentials.is_none() {
                if let Some(a) = self
                    .registries
                    .host_config(&endpoint.host)
                    .and_then(|c| c.auth.as_ref())
                {
                    credentials = Credentials::from_auth_config(&endpoint.host, a)?;
                }
            }
            out.push(Repository {
                http: self.pool(&endpoint.host)?,
                endpoint,
                name: reference.repository.clone(),
                credentials,
                actions: if push { "pull,push" } else { "pull" },
                authorization: Mutex::new(None),
                stats: self.stats.clone(),
            });
        }
        Ok(out)
    }
}

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub media_type: Option<String>,
    pub digest: Digest,
    pub bytes: Bytes,
}

/// One repository on one endpoint.
pub struct Repository {
    http: reqwest::Client,
    endpoint: Endpoint,
    name: String,
    credentials: Option<Credentials>,
    actions: &'static str,
    authorization: Mutex<Option<String>>,
    stats: Arc<Stats>,
}

impl Repository {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/{}/{}", self.endpoint.base_url(), self.name, tail)
    }

    /// Sends a request, answering one auth challenge if the registry asks.
    async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let https = !self.endpoint.is_plain_http();
        let mut answered = false;
        loop {
            let mut req = build(self.http.request(method.clone(), url));
            if let Some(a) = self
                .authorization
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                req = req.header(header::AUTHORIZATION, a);
            }
            let resp = req.send().await.map_err(http_err(&method, url, https))?;
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                if matches!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    return Err(Error::Unauthorized {
                        method,
                        url: url.to_string(),
                        status: resp.status(),
                    });
                }
                return Ok(resp);
            }
            answered = true;
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(Challenge::parse)
                .transpose()?;
            let value = match challenge {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => self.token(&realm, service, scope).await?,
                Some(Challenge::Basic) if self.credentials.is_some() => self
                    .credentials
                    .as_ref()
                    .map(Credentials::basic_header)
                    .unwrap_or_default(),
                _ => {
                    return Err(Error::Unauthorized {
                        method,
                        url: url.to_string(),
                        status: resp.status(),
                    })
                }
            };
            *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        }
    }

    /// Fetches a bearer token from the challenge's realm; anonymous unless
    /// credentials are configured (Docker Hub hands anonymous pull tokens).
    async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String, Error> {
        if !realm.starts_with("https://") && !self.endpoint.is_plain_http() {
            return Err(Error::InsecureRealm {
                realm: realm.to_string(),
            });
        }
        let scope = scope.unwrap_or_else(|| format!("repository:{}:{}", self.name, self.actions));
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(c) = &self.credentials {
            req = req.header(header::AUTHORIZATION, c.basic_header());
        }
        let resp = req
            .send()
            .await
            .map_err(http_err(&Method::GET, realm, true))?;
        let resp = check(Method::GET, realm, "token", resp).await?;
        let body = resp
            .bytes()
            .await
            .map_err(http_err(&Method::GET, realm, true))?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Status {
            method: Method::GET,
            url: realm.to_string(),
            status: StatusCode::OK,
            body: format!("token response is not JSON: {e}"),
        })?;
        Ok(format!("Bearer {}", parsed.into_token(realm)?))
    }

    /// GETs a manifest or index by tag or digest, verifying its digest when
    /// the object is a digest or the registry declared one.
    pub async fn manifest(&self, object: &str) -> Result<Fetched, Error> {
        let url = self.url(&format!("manifests/{object}"));
        self.stats.manifest_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .send(Method::GET, &url, |r| {
                r.header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let resp = check(Method::GET, &url, &format!("manifest {object}"), resp).await?;
        let header_str = |h| {
            resp.headers()
                .get(h)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let media_type = header_str(header::CONTENT_TYPE)
            .map(|m| m.split(';').next().unwrap_or("").trim().to_string());
        let declared = header_str(header::HeaderName::from_static("docker-content-digest"));
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MANIFEST_LIMIT)
        {
            return Err(Error::ManifestTooLarge { url });
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(http_err(&Method::GET, &url, false))?;
        if bytes.len() > MANIFEST_LIMIT {
            return Err(Error::ManifestTooLarge { url });
        }
        if let Some(m) = &media_type {
            if m.starts_with("application/vnd.docker.distribution.manifest.v1") {
                return Err(Error::UnsupportedMediaType {
                    what: format!("manifest {object}"),
                    media_type: m.clone(),
                });
            }
        }
        let digest = Digest::of(&bytes);
        let expected = object
            .parse::<Digest>()
            .ok()
            .or_else(|| declared.and_then(|d| d.parse().ok()));
        if let Some(expected) = expected {
            if expected != digest {
                return Err(content::Error::DigestMismatch {
                    expected,
                    actual: digest,
                }
                .into());
            }
        }
        Ok(Fetched {
            media_type,
            digest,
            bytes,
        })
    }

    /// Streams a blob into the content store; the bytes are hashed and
    /// written on a blocking thread while the next chunks arrive.
    pub async fn fetch_blob(&self, desc: &Descriptor, store: &ContentStore) -> Result<(), Error> {
        self.fetch_blob_tee(desc, store, None).await
    }

    /// Like [`Repository::fetch_blob`], also handing every chunk to `tee`
    /// (e.g. an unpacker reading a [`ChunkReader`]) as it is written, so a
    /// layer can be unpacked while it downloads. The tee sees unverified
    /// bytes: its consumer must verify what it builds (unpack checks the
    /// diff id) or discard it when this returns an error.
    pub async fn fetch_blob_tee(
        &self,
        desc: &Descriptor,
        store: &ContentStore,
        tee: Option<std::sync::mpsc::SyncSender<Bytes>>,
    ) -> Result<(), Error> {
        let url = self.url(&format!("blobs/{}", desc.digest));
        let resp = self.send(Method::GET, &url, |r| r).await?;
        let mut resp = check(Method::GET, &url, &format!("blob {}", desc.digest), resp).await?;
        self.stats.blob_downloads.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(32);
        let (store, digest, size) = (store.clone(), desc.digest.clone(), desc.size);
        let writer = tokio::task::spawn_blocking(move || -> Result<(), content::Error> {
            let mut w = store.writer()?;
            let mut tee = tee;
            while let Some(chunk) = rx.blocking_recv() {
                // A consumer that stopped early (its own error) is dropped.
                if tee.as_ref().is_some_and(|t| t.send(chunk.clone()).is_err()) {
                    tee = None;
                }
                w.write_all(&chunk).map_err(|source| content::Error::Io {
                    op: "write",
                    path: "ingest".into(),
                    source,
                })?;
                if w.size() > size {
                    return Err(content::Error::TooLarge {
                        digest: digest.to_string(),
                        limit: size,
                    });
                }
            }
            w.commit(Some(&digest), Some(size)).map(|_| ())
        });
        let mut failure = None;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    self.stats
                        .blob_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if tx.send(chunk).await.is_err() {
                        break; // the writer stopped early; its error says why
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(http_err(&Method::GET, &url, false)(e));
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(written?),
        }
    }

    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, Error> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(Method::HEAD, &url, |r| r).await?;
        Ok(resp.status().is_success())
    }

    /// Monolithic upload: POST to open an upload, PUT the bytes with the digest.
    pub async fn upload_blob(&self, digest: &Digest, data: Bytes) -> Result<(), Error> {
        let url = self.url("blobs/uploads/");
        let resp = self
            .send(Method::POST, &url, |r| r.header(header::CONTENT_LENGTH, 0))
            .await?;
        let resp = check(Method::POST, &url, "upload", resp).await?;
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::NoLocation { url: url.clone() })?;
        let mut put = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!(
                "{}://{}{}",
                self.endpoint.scheme, self.endpoint.host, location
            )
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={digest}"));
        let resp = self
            .send(Method::PUT, &put, |r| {
                r.header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        check(Method::PUT, &put, "upload", resp).await?;
        Ok(())
    }

    /// PUTs a manifest or index under a tag or digest.
    pub async fn put_manifest(
        &self,
        object: &str,
        media_type: &str,
        data: Bytes,
    ) -> Result<(), Error> {
        let url = self.url(&format!("manifests/{object}"));
        let resp = self
            .send(Method::PUT, &url, |r| {
                r.header(header::CONTENT_TYPE, media_type)
                    .body(data.clone())
            })
            .await?;
        check(Method::PUT, &url, "manifest", resp).await?;
        Ok(())
    }
}

/// Reads the chunks a [`Repository::fetch_blob_tee`] hands out; end of
/// input when the download ends (or fails).
pub struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    pub fn new(rx: std::sync::mpsc::Receiver<Bytes>) -> ChunkReader {
        ChunkReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Maps non-success statuses to errors.
async fn check(method: Method, url: &str, what: &str, resp: Response) -> Result<Response, Error> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(Error::NotFound {
            what: what.to_string(),
            url: url.to_string(),
        });
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(Error::Unauthorized {
            method,
            url: url.to_string(),
            status,
        });
    }
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(Error::Status {
        method,
        url: url.to_string(),
        status,
        body,
    })
}

/// Media types of layers rkube can unpack.
pub fn supported_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        oci::OCI_LAYER_TAR
            | oci::OCI_LAYER_GZIP
            | oci::DOCKER_LAYER_GZIP
            | oci::OCI_LAYER_ND_GZIP
            | oci::DOCKER_FOREIGN_GZIP
    )
}

/// Media types of image configs rkube understands.
pub fn supported_config(media_type: &str) -> bool {
    matches!(media_type, oci::OCI_CONFIG | oci::DOCKER_CONFIG)
}
