//! Authentication and authorization of kubelet API requests, delegated
//! to the API server as upstream's kubelet does with
//! `--authentication-token-webhook` and `--authorization-mode=Webhook`.
//!
//! Upstream counterpart: `pkg/kubelet/server/auth.go` (the request
//! attributes: verb from the HTTP method, resource `nodes`, name the
//! node, subresource from the path) and the delegating authenticator and
//! authorizer of `k8s.io/apiserver/pkg/authentication/authenticatorfactory`
//! and `pkg/authorization/authorizerfactory`, with their caches (tokens
//! 2 minutes; decisions 5 minutes allowed, 30 seconds denied).
//!
//! A client is authenticated by a certificate from the cluster's client
//! CA (checked in the TLS handshake) or by a bearer token the API server
//! accepts in a TokenReview; anything else gets 401. Every authenticated
//! request is then checked with a SubjectAccessReview; a denial is 403
//! with upstream's "Forbidden (user=..., verb=..., resource=...,
//! subresource=...)" text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::Method;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user as the authenticator chain hands it on: upstream's
    /// AuthenticatedGroupAdder puts everyone authenticated in
    /// `system:authenticated`.
    pub fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> UserInfo {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { name, uid, groups }
    }
}

/// What a SubjectAccessReview asks about one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    /// The node's name.
    pub name: String,
    pub subresource: String,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// The API server's TokenReview and SubjectAccessReview endpoints; the
/// kubelet implements it with its API client, tests with a fake.
#[async_trait]
pub trait Delegate: Send + Sync {
    /// `Ok(None)`: the API server does not accept the token.
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String>;
    async fn review_access(&self, attrs: &Attributes) -> Result<Decision, String>;
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed(UserInfo),
    /// 401.
    Unauthenticated,
    /// 403 with this message.
    Forbidden(String),
    /// 500: the API server could not be asked.
    Failed(String),
}

const TOKEN_TTL: Duration = Duration::from_secs(120);
const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Entries kept before a cache starts over (a bound, not an LRU: a
/// kubelet sees few distinct callers).
const CACHE_LIMIT: usize = 4096;

struct Cache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn put(&self, k: K, v: V, ttl: Duration) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(k, (v, Instant::now() + ttl));
    }
}

/// Authenticates and authorizes requests through a [`Delegate`].
pub struct Auth {
    delegate: Arc<dyn Delegate>,
    node_name: String,
    tokens: Cache<String, Option<UserInfo>>,
    decisions: Cache<Attributes, Decision>,
}

impl Auth {
    pub fn new(delegate: Arc<dyn Delegate>, node_name: String) -> Auth {
        Auth {
            delegate,
            node_name,
            tokens: Cache::new(),
            decisions: Cache::new(),
        }
    }

    /// Decides one request. `cert_user` is the identity of a verified
    /// client certificate; `bearer` the request's bearer token.
    pub async fn check(
        &self,
        cert_user: Option<UserInfo>,
        bearer: Option<&str>,
        method: &Method,
        path: &str,
    ) -> Verdict {
        let user = match cert_user {
            Some(u) => u,
            None => match bearer {
                None => return Verdict::Unauthenticated,
                Some(token) => match self.token_user(token).await {
                    Ok(Some(u)) => u,
                    Ok(None) => return Verdict::Unauthenticated,
                    // Upstream answers 401 when the review itself fails.
                    Err(e) => {
                        tracing::warn!(error = %e, "kubelet TokenReview failed");
                        return Verdict::Unauthenticated;
                    }
                },
            },
        };
        let verb = verb(method);
        let subresource = subresource(path);
        let attrs = Attributes {
            user: user.clone(),
            verb: verb.to_string(),
            name: self.node_name.clone(),
            subresource: subresource.to_string(),
        };
        match self.decide(attrs).await {
            Ok(d) if d.allowed => Verdict::Allowed(user),
            Ok(_) => Verdict::Forbidden(format!(
                "Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})",
                user.name
            )),
            Err(e) => Verdict::Failed(e),
        }
    }

    async fn token_user(&self, token: &str) -> Result<Option<UserInfo>, String> {
        if let Some(hit) = self.tokens.get(&token.to_string()) {
            return Ok(hit);
        }
        let user = self.delegate.review_token(token).await?.map(|u| {
            let UserInfo { name, uid, groups } = u;
            UserInfo::authenticated(name, uid, groups)
        });
        self.tokens.put(token.to_string(), user.clone(), TOKEN_TTL);
        Ok(user)
    }

    async fn decide(&self, attrs: Attributes) -> Result<Decision, String> {
        if let Some(hit) = self.decisions.get(&attrs) {
            return Ok(hit);
        }
        let d = self.delegate.review_access(&attrs).await?;
        let ttl = if d.allowed { ALLOWED_TTL } else { DENIED_TTL };
        self.decisions.put(attrs, d.clone(), ttl);
        Ok(d)
    }
}

/// The API verb of an HTTP method, as upstream's kubelet maps it.
pub fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

/// The `nodes` subresource a path is authorized as: the named ones of
/// upstream's kubelet, `proxy` for everything else (exec, attach,
/// port-forward, container logs, pods, healthz).
pub fn subresource(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "spec" => "spec",
        "checkpoint" => "checkpoint",
        _ => "proxy",
    }
}

/// The bearer token of an Authorization header value.
pub fn bearer(value: Option<&http::HeaderValue>) -> Option<&str> {
    let (scheme, token) = value?.to_str().ok()?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Accepts the token "good" as "alice"; allows everything but the
    /// `proxy` subresource to "mallory".
    #[derive(Default)]
    struct Fake {
        token_calls: AtomicUsize,
        access_calls: AtomicUsize,
    }

    #[async_trait]
    impl Delegate for Fake {
        async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
            self.token_calls.fetch_add(1, Ordering::SeqCst);
            Ok((token == "good").then(|| UserInfo {
                name: "alice".into(),
                uid: "u1".into(),
                groups: vec!["dev".into()],
            }))
        }

        async fn review_access(&self, a: &Attributes) -> Result<Decision, String> {
            self.access_calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(a.name, "node-1");
            assert!(a.user.groups.iter().any(|g| g == "system:authenticated"));
            Ok(Decision {
                allowed: !(a.user.name == "mallory" && a.subresource == "proxy"),
                reason: String::new(),
            })
        }
    }

    #[tokio::test]
    async fn verdicts_and_caching() {
        let fake = Arc::new(Fake::default());
        let auth = Auth::new(fake.clone(), "node-1".into());
        let get = Method::GET;
        assert_eq!(
            auth.check(None, None, &get, "/pods").await,
            Verdict::Unauthenticated
        );
        assert_eq!(
            auth.check(None, Some("bad"), &get, "/pods").await,
            Verdict::Unauthenticated
        );
        let Verdict::Allowed(u) = auth.check(None, Some("good"), &get, "/pods").await else {
            panic!("token user refused");
        };
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, vec!["dev", "system:authenticated"]);
        // Cached: a second request asks nothing again.
        auth.check(None, Some("good"), &get, "/pods").await;
        assert_eq!(fake.token_calls.load(Ordering::SeqCst), 2);
        assert_eq!(fake.access_calls.load(Ordering::SeqCst), 1);
        let mallory = UserInfo::authenticated("mallory".into(), String::new(), vec![]);
        assert_eq!(
            auth.check(Some(mallory.clone()), None, &Method::POST, "/exec/ns/p/c")
                .await,
            Verdict::Forbidden(
                "Forbidden (user=mallory, verb=create, resource=nodes, subresource=proxy)".into()
            )
        );
        assert!(matches!(
            auth.check(Some(mallory), None, &get, "/stats/summary")
                .await,
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn attributes_of_paths_and_methods() {
        assert_eq!(subresource("/stats/summary"), "stats");
        assert_eq!(subresource("/metrics/resource"), "metrics");
        assert_eq!(subresource("/logs/"), "log");
        assert_eq!(subresource("/containerLogs/ns/p/c"), "proxy");
        assert_eq!(subresource("/exec/ns/p/c"), "proxy");
        assert_eq!(verb(&Method::HEAD), "get");
        assert_eq!(verb(&Method::POST), "create");
        let h = http::HeaderValue::from_static("Bearer abc");
        assert_eq!(bearer(Some(&h)), Some("abc"));
        assert_eq!(bearer(None), None);
    }
}
