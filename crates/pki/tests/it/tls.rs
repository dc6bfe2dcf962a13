use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rkube_pki::tls::{client_config, peer_identity, server_config};
use rkube_pki::{CertKey, Identity, Pki, ServingOptions};
use rustls::{ClientConfig, ServerConfig};

/// Answers one TLS connection on loopback with the client's identity.
pub fn serve_once(
    config: ServerConfig,
) -> (SocketAddr, JoinHandle<Result<Option<Identity>, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        let id = peer_identity(conn.peer_certificates()).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut line = String::new();
        BufReader::new(&mut tls)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let reply = match &id {
            Some(id) => format!("hello {} {:?}\n", id.common_name, id.organizations),
            None => "hello anonymous\n".to_string(),
        };
        tls.write_all(reply.as_bytes()).map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        tls.flush().map_err(|e| e.to_string())?;
        Ok(id)
    });
    (addr, handle)
}

fn talk(addr: SocketAddr, config: ClientConfig, name: &str) -> Result<String, String> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let server_name = name.to_string().try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, &mut tcp);
    tls.write_all(b"ping\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn new_pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &ServingOptions::default()).unwrap();
    (dir, pki)
}

fn server(pki: &Pki) -> ServerConfig {
    server_config(pki.serving(), &[pki.client_ca().cert_pem()]).unwrap()
}

#[test]
fn client_certificate_identity_reaches_the_server() {
    let (_d, pki) = new_pki();
    let (addr, handle) = serve_once(server(&pki));
    let client = client_config(pki.server_ca().cert_pem(), Some(pki.admin())).unwrap();
    let reply = talk(addr, client, "kubernetes.default.svc").unwrap();
    assert_eq!(reply, "hello admin [\"system:masters\"]\n");
    let id = handle.join().unwrap().unwrap().unwrap();
    assert_eq!(id.common_name, "admin");
}

#[test]
fn connection_without_certificate_is_allowed_but_anonymous() {
    let (_d, pki) = new_pki();
    let (addr, handle) = serve_once(server(&pki));
    let client = client_config(pki.server_ca().cert_pem(), None).unwrap();
    assert_eq!(
        talk(addr, client, "127.0.0.1").unwrap(),
        "hello anonymous\n"
    );
    assert_eq!(handle.join().unwrap().unwrap(), None);
}

#[test]
fn certificate_from_another_ca_fails_the_handshake() {
    let (_d, pki) = new_pki();
    let (_d2, stranger) = new_pki();
    let (addr, handle) = serve_once(server(&pki));
    let client = client_config(pki.server_ca().cert_pem(), Some(stranger.admin())).unwrap();
    assert!(talk(addr, client, "localhost").is_err());
    assert!(handle.join().unwrap().is_err());
}

#[test]
fn serving_certificate_is_checked_by_the_client() {
    let (_d, pki) = new_pki();
    let (_d2, stranger) = new_pki();
    // Wrong CA.
    let (addr, handle) = serve_once(server(&pki));
    let client = client_config(stranger.server_ca().cert_pem(), None).unwrap();
    assert!(talk(addr, client, "localhost").is_err());
    assert!(handle.join().unwrap().is_err());
    // Right CA, name not in the certificate.
    let (addr, handle) = serve_once(server(&pki));
    let client = client_config(pki.server_ca().cert_pem(), None).unwrap();
    assert!(talk(addr, client, "evil.example.com").is_err());
    assert!(handle.join().unwrap().is_err());
}

#[test]
fn server_without_client_cas_does_not_ask_for_certificates() {
    let (_d, pki) = new_pki();
    let (addr, handle) = serve_once(server_config(pki.serving(), &[]).unwrap());
    let client = client_config(pki.server_ca().cert_pem(), Some(pki.admin())).unwrap();
    assert_eq!(
        talk(addr, client, "localhost").unwrap(),
        "hello anonymous\n"
    );
    assert_eq!(handle.join().unwrap().unwrap(), None);
}

#[test]
fn bad_pem_is_a_clear_error() {
    let (_d, pki) = new_pki();
    let bad = CertKey {
        cert_pem: "nope".into(),
        key_pem: pki.serving().key_pem.clone(),
    };
    let err = server_config(&bad, &[]).unwrap_err().to_string();
    assert!(err.contains("serving certificate"), "{err}");
    let err = client_config("nope", None).unwrap_err().to_string();
    assert!(err.contains("server CA"), "{err}");
    let bad_key = CertKey {
        cert_pem: pki.admin().cert_pem.clone(),
        key_pem: "nope".into(),
    };
    let err = client_config(pki.server_ca().cert_pem(), Some(&bad_key))
        .unwrap_err()
        .to_string();
    assert!(err.contains("client key"), "{err}");
}

#[test]
fn crypto_provider_install_is_idempotent() {
    rkube_pki::install_crypto_provider();
    rkube_pki::install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}
