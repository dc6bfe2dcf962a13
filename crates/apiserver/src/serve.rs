//! The HTTPS listener: TLS, then authentication from the client certificate.
//!
//! Upstream counterpart: `SecureServingInfo` and the x509 request
//! authenticator. The verified peer certificate's CN is the user and its O
//! attributes the groups; the identity travels to the handlers as a request
//! extension. Requests without one are anonymous, and the handlers refuse
//! them (401) outside the public health and version endpoints.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Accept TLS connections on `listener` and serve `router` on them until
/// the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(err) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
            };
            let user = match rkube_pki::tls::peer_identity(tls.get_ref().1.peer_certificates()) {
                Ok(id) => id.map(|id| User {
                    name: id.common_name,
                    groups: id.organizations,
                }),
                Err(err) => {
                    tracing::debug!(%peer, %err, "unreadable client certificate");
                    None
                }
            };
            let service =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    if let Some(user) = &user {
                        req.extensions_mut().insert(user.clone());
                    }
                    router.clone().oneshot(req.map(axum::body::Body::new))
                });
            let conn = auto::Builder::new(TokioExecutor::new());
            if let Err(err) = conn
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
}
