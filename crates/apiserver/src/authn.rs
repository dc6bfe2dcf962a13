//! Bearer-token authentication: service account tokens (JWTs signed with
//! the cluster's service-account key).
//!
//! Upstream counterpart: the service account token authenticator
//! (`pkg/serviceaccount`). A token is valid when its signature, issuer,
//! audience and lifetime check out *and* the service account it names
//! still exists with the same uid (and the pod it is bound to, if any).

use http::HeaderMap;
use rkube_pki::SaKey;
use serde_json::Value;

use crate::{ApiServer, User};

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The user a service account token names, or `None` when it is not valid.
pub async fn service_account_user(server: &ApiServer, key: &SaKey, token: &str) -> Option<User> {
    service_account_user_for(server, key, token, &[key.issuer().to_string()]).await
}

/// [`service_account_user`] for a token meant for one of `audiences`
/// (a TokenReview may name others than the API server's, as Vault does).
pub async fn service_account_user_for(
    server: &ApiServer,
    key: &SaKey,
    token: &str,
    audiences: &[String],
) -> Option<User> {
    let now = time::OffsetDateTime::now_utc();
    let claims = key.verify(token, audiences, now).ok()?;
    let k = &claims.kubernetes;
    let sa = server
        .resource("", "v1", "serviceaccounts")?
        .get(Some(&k.namespace), &k.serviceaccount.name, None)
        .await
        .ok()?;
    if !k.serviceaccount.uid.is_empty() && uid(&sa) != k.serviceaccount.uid {
        return None;
    }
    if let Some(pod) = &k.pod {
        let live = server
            .resource("", "v1", "pods")?
            .get(Some(&k.namespace), &pod.name, None)
            .await
            .ok()?;
        if !pod.uid.is_empty() && uid(&live) != pod.uid {
            return None;
        }
    }
    Some(User {
        name: claims.sub.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
    })
}

fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}
