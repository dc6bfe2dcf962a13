//! The HTTP(S) GET check of httpGet probes and hooks, and the TCP dial
//! every network check starts with. Blocking: it runs on the thread that
//! entered the pod's network namespace.
//!
//! Upstream counterpart: `pkg/probe/http/{http,request}.go` and
//! `pkg/probe/tcp/tcp.go`. As upstream, HTTPS does not verify the
//! server's certificate (`InsecureSkipVerify`): a probe checks that the
//! container answers, not who it is. `httpHeaders` are sent as given,
//! and a `Host` among them replaces the dialled address in the Host
//! header. 2xx and 3xx are success; redirects are not followed (upstream
//! follows same-host ones, which end in a 2xx/3xx or a failure the
//! redirect itself already reports as success).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What one GET asks.
pub(super) struct Get<'a> {
    pub host: Option<String>,
    pub default: IpAddr,
    pub port: u16,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub https: bool,
    pub timeout: Duration,
}

/// The address a check dials: the probe's `host` (an IP; upstream does
/// not resolve names either since the kubelet's resolver is the node's)
/// or the pod's.
pub(super) fn target(host: Option<&str>, default: IpAddr, port: u16) -> Result<SocketAddr, String> {
    let ip: IpAddr = match host {
        Some(h) => h
            .parse()
            .map_err(|_| format!("cannot resolve host {h:?}"))?,
        None => default,
    };
    Ok(SocketAddr::new(ip, port))
}

pub(super) fn dial(
    host: Option<&str>,
    default: IpAddr,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let addr = target(host, default, port)?;
    TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1)))
        .map_err(|e| format!("dial tcp {addr}: connect: {e}"))
}

/// One TLS client config for every HTTPS probe: no verification, as
/// upstream's probe transport.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let config = rustls::ClientConfig::builder_with_provider(rkube_pki::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(rkube_pki::tls::UnverifiedServer::new())
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Runs the GET; `Err` carries upstream's failure wording.
pub(super) fn get(req: &Get<'_>) -> Result<(), String> {
    let addr = target(req.host.as_deref(), req.default, req.port)?;
    let scheme = if req.https { "https" } else { "http" };
    let url = format!("{scheme}://{addr}{}", req.path);
    let tcp = dial(req.host.as_deref(), req.default, req.port, req.timeout)
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let _ = tcp.set_read_timeout(Some(req.timeout));
    let _ = tcp.set_write_timeout(Some(req.timeout));
    let code = if req.https {
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let conn = rustls::ClientConnection::new(insecure_tls(), name)
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut tls, req, &addr)
    } else {
        let mut tcp = tcp;
        exchange(&mut tcp, req, &addr)
    }
    .map_err(|e| format!("Get \"{url}\": {e}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Writes the request and reads the status code of the response.
fn exchange<S: Read + Write>(s: &mut S, req: &Get<'_>, addr: &SocketAddr) -> Result<u16, String> {
    s.write_all(request_head(req, addr).as_bytes())
        .map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if head[..n].contains(&b'\n') {
                    break;
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "malformed HTTP response".to_string())
}

fn request_head(req: &Get<'_>, addr: &SocketAddr) -> String {
    let mut head = format!("GET {} HTTP/1.1\r\n", req.path);
    let has = |n: &str| req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("user-agent") {
        head.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("accept") {
        head.push_str("Accept: */*\r\n");
    }
    for (k, v) in req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn get_on(port: u16, https: bool, headers: &[(String, String)]) -> Result<(), String> {
        get(&Get {
            host: None,
            default: lo(),
            port,
            path: "/healthz",
            headers,
            https,
            timeout: Duration::from_secs(5),
        })
    }

    /// Answers `codes` in order, handing each request head to `seen`.
    fn plain_server(codes: Vec<u16>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for code in codes {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .unwrap();
            }
            seen
        });
        (port, h)
    }

    #[test]
    fn http_status_codes_and_headers() {
        let (port, server) = plain_server(vec![200, 302, 503]);
        let headers = vec![
            ("Host".to_string(), "example.test".to_string()),
            ("X-Probe".to_string(), "yes".to_string()),
        ];
        assert!(get_on(port, false, &headers).is_ok());
        assert!(get_on(port, false, &[]).is_ok());
        let err = get_on(port, false, &[]).unwrap_err();
        assert_eq!(err, "HTTP probe failed with statuscode: 503");
        let seen = server.join().unwrap();
        assert!(
            seen[0].starts_with("GET /healthz HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains("Host: example.test\r\n"), "{}", seen[0]);
        assert!(!seen[0].contains("Host: 127.0.0.1"), "{}", seen[0]);
        assert!(seen[0].contains("X-Probe: yes\r\n"), "{}", seen[0]);
        assert!(seen[1].contains(&format!("Host: 127.0.0.1:{port}\r\n")));
        assert!(seen[1].contains("User-Agent: kube-probe/"));
    }

    #[test]
    fn refused_connections_name_the_url() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = get_on(free, false, &[]).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "Get \"http://127.0.0.1:{free}/healthz\": dial tcp"
            )),
            "{err}"
        );
        assert!(dial(None, lo(), free, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn https_without_verification() {
        // A self-signed certificate no CA vouches for: upstream's probe
        // accepts it.
        let now = time::OffsetDateTime::now_utc();
        let ca = rkube_pki::ca::Ca::generate("probe-test-ca", now).unwrap();
        let sans = rkube_pki::certs::SubjectAltNames::parse(&["127.0.0.1"]).unwrap();
        let serving =
            rkube_pki::certs::issue_serving_cert(&ca, &sans, time::Duration::days(1), now).unwrap();
        let tls = rkube_pki::tls::server_config(&serving, &[]).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for code in [200u16, 500] {
                let (tcp, _) = l.accept().unwrap();
                let conn = rustls::ServerConnection::new(Arc::new(tls.clone())).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .unwrap();
                s.flush().unwrap();
                s.conn.send_close_notify();
                let _ = s.flush();
            }
            seen
        });
        let headers = vec![("Authorization".to_string(), "Bearer t".to_string())];
        get_on(port, true, &headers).unwrap();
        let err = get_on(port, true, &[]).unwrap_err();
        assert_eq!(err, "HTTP probe failed with statuscode: 500");
        let seen = server.join().unwrap();
        assert!(
            seen[0].contains("Authorization: Bearer t\r\n"),
            "{}",
            seen[0]
        );
        // Plain HTTP against a TLS port fails instead of passing.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let plain = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        });
        assert!(get_on(port, true, &[]).is_err());
        plain.join().unwrap();
    }
}
