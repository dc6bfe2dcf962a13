//! Top-level dispatch: public endpoints, authentication, discovery, then
//! the generic resource handlers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::Router;
use http::{Request, Response, StatusCode};
use rkube_machinery::StatusError;
use serde_json::json;

use crate::request::{self, Query};
use crate::response::{self, ok};
use crate::{authn, discovery, openapi, rest, ApiServer, User};

/// The server version reported at `/version`.
pub fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0+rkube.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// The router serving the whole API from `server`.
pub fn router(server: Arc<ApiServer>) -> Router {
    Router::new().fallback(dispatch).with_state(server)
}

async fn dispatch(State(server): State<Arc<ApiServer>>, mut req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    // Public, as kube-apiserver's system:public-info-viewer role makes them.
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return response::text(StatusCode::OK, "ok"),
        "/version" => return ok(&version()),
        _ => {}
    }
    if req.extensions().get::<User>().is_none() {
        let token_user = match (authn::bearer(req.headers()), server.sa_key.as_ref()) {
            (Some(token), Some(key)) => authn::service_account_user(&server, key, token).await,
            _ => None,
        };
        match token_user {
            Some(user) => {
                req.extensions_mut().insert(user);
            }
            None => return response::error(StatusError::unauthorized("Unauthorized")),
        }
    }
    let query = Query::parse(req.uri().query());
    if let Some(resp) = crate::metrics::handle(&server, &path, &query, req.method()).await {
        return resp;
    }
    if let Some(info) = request::parse(req.method(), &path, &query) {
        return rest::handle(&server, info, query, req).await;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let headers = req.headers();
    let doc = match segments.as_slice() {
        ["api"] => {
            let address = server_address(&req);
            return openapi::discovery(headers, true, || discovery::api_versions(&address));
        }
        ["apis"] => return crate::metrics::apis(headers).await,
        ["openapi", "v2"] => return openapi::v2(headers),
        ["openapi", "v3", ..] => return openapi::v3(&path, &query, headers),
        ["api", "v1"] => discovery::resource_list("", "v1"),
        ["apis", group] => discovery::api_group(group),
        ["apis", group, version] => discovery::resource_list(group, version),
        _ => None,
    };
    match doc {
        Some(doc) => ok(&doc),
        None => response::error(response::no_such_resource()),
    }
}

fn server_address(req: &Request<Body>) -> String {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:6443")
        .to_string()
}
