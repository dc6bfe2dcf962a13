//! The kubelet API's delegated authentication and authorization: bearer
//! tokens checked with a TokenReview, requests with a
//! SubjectAccessReview, both created through the kubelet's own API
//! client (its node identity).
//!
//! Upstream counterpart: the webhook clients the kubelet builds in
//! `cmd/kubelet/app/auth.go` (`BuildAuth`: delegating token
//! authenticator, SubjectAccessReview authorizer).

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use rkube_kubelet_server::auth::{Attributes, Decision, Delegate, UserInfo};

/// Reviews through the API server.
pub struct ApiReviews {
    pub client: kube::Client,
}

#[async_trait]
impl Delegate for ApiReviews {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let done = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("create TokenReview: {e}"))?;
        let status = done.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
        }))
    }

    async fn review_access(&self, a: &Attributes) -> Result<Decision, String> {
        let review = SubjectAccessReview {
            spec: sar_spec(a),
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let done = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("create SubjectAccessReview: {e}"))?;
        let status = done.status.unwrap_or_default();
        Ok(Decision {
            allowed: status.allowed && status.denied != Some(true),
            reason: status.reason.unwrap_or_default(),
        })
    }
}

/// The review of one kubelet request: `nodes/<subresource>` of this node,
/// cluster-scoped, API group core.
fn sar_spec(a: &Attributes) -> SubjectAccessReviewSpec {
    SubjectAccessReviewSpec {
        user: Some(a.user.name.clone()),
        uid: Some(a.user.uid.clone()).filter(|u| !u.is_empty()),
        groups: Some(a.user.groups.clone()),
        resource_attributes: Some(ResourceAttributes {
            verb: Some(a.verb.clone()),
            group: Some(String::new()),
            version: Some("v1".into()),
            resource: Some("nodes".into()),
            subresource: Some(a.subresource.clone()),
            name: Some(a.name.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_names_the_node_subresource() {
        let a = Attributes {
            user: UserInfo::authenticated("kube-apiserver".into(), String::new(), vec![]),
            verb: "create".into(),
            name: "node-1".into(),
            subresource: "proxy".into(),
        };
        let v = serde_json::to_value(sar_spec(&a)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "user": "kube-apiserver",
                "groups": ["system:authenticated"],
                "resourceAttributes": {
                    "verb": "create", "group": "", "version": "v1",
                    "resource": "nodes", "subresource": "proxy", "name": "node-1"
                }
            })
        );
    }
}
