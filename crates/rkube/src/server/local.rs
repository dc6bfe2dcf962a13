//! The in-process transport of the server's own components: the controller
//! manager's and scheduler's kube-rs clients hand each request straight to
//! the API server's router, with the component's identity attached as the
//! TLS listener attaches a verified client certificate's.
//!
//! Upstream counterpart: kube-apiserver's loopback client
//! (`LoopbackClientConfig`), which its own post-start hooks and in-process
//! controllers use instead of dialing the public listener. Here the
//! requests still run the whole handler chain — authentication's outcome
//! (the [`User`]), authorization, admission, the registry and the watch
//! cache — as from any other client; what they skip is the TLS record
//! layer and HTTP/1.1 framing on both ends of a loopback socket, and the
//! one connection per concurrent request that kube-rs's HTTP/1.1 client
//! opens (the scheduler alone keeps 128 bindings in flight). A profile of
//! the scheduler benchmark put TLS and hyper at about a tenth of the
//! server's CPU.

use std::convert::Infallible;

use axum::Router;
use http::{Request, Response};
use kube::client::ConfigExt;
use rkube_apiserver::User;
use tower::{ServiceBuilder, ServiceExt};

/// A kube client whose requests `router` serves in this process as `user`.
/// `url` is the API server's address, kept as the requests' base URI so
/// that they look like those an HTTP/2 client sends (absolute URIs).
pub fn client(router: Router, user: User, url: &str) -> anyhow::Result<kube::Client> {
    let config = kube::Config::new(url.parse()?);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .service(tower::service_fn(
            move |req: Request<kube::client::Body>| {
                let router = router.clone();
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(user.clone());
                async move {
                    let resp: Response<axum::body::Body> = router.oneshot(req).await?;
                    Ok::<_, Infallible>(resp)
                }
            },
        ));
    Ok(kube::Client::new(service, config.default_namespace))
}
