//! The kubeconfig and the TLS setup, judged by the real kubectl: it must
//! trust the serving certificate for 127.0.0.1 through the embedded CA and
//! present the admin client certificate, which the server then reads.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use rkube_pki::tls::{peer_identity, server_config};
use rkube_pki::{kubeconfig, write_kubeconfig, KubeconfigSpec, Pki, ServingOptions};

/// A tiny HTTPS/1.1 server answering each request with the caller's
/// identity (or 401 without a certificate). Serves at most `max` requests.
fn https_whoami(pki: &Pki, max: usize) -> SocketAddr {
    let mut config = server_config(pki.serving(), &[pki.client_ca().cert_pem()]).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(tcp) = stream else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            // Read the request head; the handshake happens on first read.
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(n) if n > 0 && line != "\r\n" => continue,
                    _ => break,
                }
            }
            let id = peer_identity(tls.conn.peer_certificates()).unwrap();
            let (status, body) = match id {
                Some(id) => (
                    "200 OK",
                    format!(
                        "user={} groups={}",
                        id.common_name,
                        id.organizations.join(",")
                    ),
                ),
                None => ("401 Unauthorized", "no client certificate".to_string()),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(reply.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    addr
}

fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .expect("kubectl must be installed (see DESIGN.md)")
}

#[test]
fn kubectl_accepts_the_kubeconfig_and_authenticates() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &ServingOptions::default()).unwrap();
    let addr = https_whoami(&pki, 4);
    let url = format!("https://{addr}");
    let path = tmp.path().join("etc/rkube/rkube.yaml");
    pki.write_admin_kubeconfig(&path, &url).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = kubectl(tmp.path(), &path, &["get", "--raw", "/whoami"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "user=admin groups=system:masters");

    let out = kubectl(
        tmp.path(),
        &path,
        &[
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.current-context} {.clusters[0].cluster.server} {.users[0].name}",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("default {url} default")
    );
}

#[test]
fn kubectl_rejects_a_server_outside_the_embedded_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &ServingOptions::default()).unwrap();
    let stranger =
        Pki::load_or_create(&tmp.path().join("other"), &ServingOptions::default()).unwrap();
    let addr = https_whoami(&pki, 4);
    let url = format!("https://{addr}");
    let path = tmp.path().join("bad.yaml");
    let spec = KubeconfigSpec::new(
        &url,
        stranger.server_ca().cert_pem(),
        &pki.admin().cert_pem,
        &pki.admin().key_pem,
    );
    write_kubeconfig(&path, &spec).unwrap();
    let out = kubectl(tmp.path(), &path, &["get", "--raw", "/whoami"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn names_are_quoted_and_url_checked() {
    let mut spec = KubeconfigSpec::new("https://127.0.0.1:6443", "ca", "cert", "key");
    spec.cluster_name = "my: \"odd\" name";
    let text = kubeconfig(&spec).unwrap();
    assert!(text.contains(r#"- name: "my: \"odd\" name""#), "{text}");
    assert!(
        text.contains("certificate-authority-data: \"Y2E=\""),
        "{text}"
    );
    spec.server_url = "http://127.0.0.1:6443";
    assert!(kubeconfig(&spec).is_err());
}
