use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rkube_pki::certs::{self, SubjectAltNames};
use rkube_pki::{first_service_ip, CsrPolicy, Pki, ServingOptions, Usage};
use rustls_pki_types::ServerName;
use time::Duration;

use crate::{der, now};

fn opts(sans: &[&str]) -> ServingOptions {
    ServingOptions {
        sans: sans.iter().map(|s| s.to_string()).collect(),
        ..ServingOptions::default()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn first_start_creates_k3s_layout_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server/tls");
    Pki::load_or_create(&dir, &opts(&["node-1", "192.168.5.10"])).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for stem in [
        "server-ca",
        "client-ca",
        "serving-kube-apiserver",
        "client-admin",
    ] {
        assert_eq!(mode(&dir.join(format!("{stem}.key"))), 0o600, "{stem}");
        assert_eq!(mode(&dir.join(format!("{stem}.crt"))), 0o644, "{stem}");
    }
    assert_eq!(mode(&dir.join("service.key")), 0o600);
    assert!(!dir.join("request-header-ca.crt").exists());
}

#[test]
fn serving_cert_covers_the_apiserver_names() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(
        tmp.path(),
        &opts(&["node-1", "192.168.5.10", "api.example.com"]),
    )
    .unwrap();
    let cert = der(&pki.serving().cert_pem);
    pki.server_ca()
        .verify(&cert, Usage::ServerAuth, now())
        .unwrap();
    let ee = webpki::EndEntityCert::try_from(&cert).unwrap();
    for name in [
        "node-1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "10.43.0.1",
        "192.168.5.10",
        "api.example.com",
    ] {
        let sn = ServerName::try_from(name).unwrap();
        ee.verify_is_valid_for_subject_name(&sn)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Serving and client certificates come from different CAs.
    assert!(pki
        .client_ca()
        .verify(&cert, Usage::ServerAuth, now())
        .is_err());
    let admin = der(&pki.admin().cert_pem);
    pki.client_ca()
        .verify(&admin, Usage::ClientAuth, now())
        .unwrap();
    assert!(pki
        .server_ca()
        .verify(&admin, Usage::ClientAuth, now())
        .is_err());
    let id = certs::identity(&admin).unwrap();
    assert_eq!(
        (id.common_name.as_str(), id.organizations),
        ("admin", vec!["system:masters".to_string()])
    );
}

#[test]
fn restart_reuses_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&["node-1"]);
    let a = Pki::load_or_create(tmp.path(), &o).unwrap();
    let b = Pki::load_or_create(tmp.path(), &o).unwrap();
    assert_eq!(a.server_ca().cert_pem(), b.server_ca().cert_pem());
    assert_eq!(a.client_ca().cert_pem(), b.client_ca().cert_pem());
    assert_eq!(a.serving(), b.serving());
    assert_eq!(a.admin(), b.admin());
    assert_eq!(
        a.service_account_key().key_pem(),
        b.service_account_key().key_pem()
    );
}

#[test]
fn new_san_regenerates_serving_cert_but_keeps_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Pki::load_or_create(tmp.path(), &opts(&["node-1"])).unwrap();
    let b = Pki::load_or_create(tmp.path(), &opts(&["node-1", "10.9.8.7"])).unwrap();
    assert_eq!(a.server_ca().cert_pem(), b.server_ca().cert_pem());
    assert_ne!(a.serving(), b.serving());
    assert_eq!(a.admin(), b.admin());
    let sans = certs::cert_sans(&der(&b.serving().cert_pem)).unwrap();
    assert!(sans.ips.contains(&"10.9.8.7".parse::<IpAddr>().unwrap()));
    assert_eq!(
        read(tmp.path(), "serving-kube-apiserver.crt"),
        b.serving().cert_pem
    );
    // Dropping a name keeps the certificate that still covers the rest.
    let c = Pki::load_or_create(tmp.path(), &opts(&["node-1"])).unwrap();
    assert_eq!(b.serving(), c.serving());
}

#[test]
fn certificates_near_expiry_are_renewed() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&["node-1"]);
    let long_ago = now() - Duration::days(300);
    let a = Pki::load_or_create_at(tmp.path(), &o, long_ago).unwrap();
    let b = Pki::load_or_create_at(tmp.path(), &o, now()).unwrap();
    assert_eq!(a.server_ca().cert_pem(), b.server_ca().cert_pem());
    assert_ne!(a.serving(), b.serving());
    assert_ne!(a.admin(), b.admin());
    let later = now() + Duration::days(300);
    b.client_ca()
        .verify(&der(&b.admin().cert_pem), Usage::ClientAuth, later)
        .unwrap();
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &opts(&[])).unwrap();
    std::fs::write(tmp.path().join("service.key"), "nonsense").unwrap();
    let err = Pki::load_or_create(tmp.path(), &opts(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("service.key"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &opts(&[])).unwrap();
    std::fs::write(tmp.path().join("client-ca.key"), "nonsense").unwrap();
    let err = Pki::load_or_create(tmp.path(), &opts(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("client-ca.key"), "{err}");

    // A leaf certificate is derived material: a corrupt one is replaced.
    let tmp = tempfile::tempdir().unwrap();
    let a = Pki::load_or_create(tmp.path(), &opts(&[])).unwrap();
    std::fs::write(tmp.path().join("client-admin.crt"), "nonsense").unwrap();
    let b = Pki::load_or_create(tmp.path(), &opts(&[])).unwrap();
    assert_ne!(a.admin(), b.admin());

    let err = Pki::load_or_create(tmp.path(), &opts(&["bad name"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad name"), "{err}");
}

#[test]
fn unreadable_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &opts(&[])).unwrap();
    let key = tmp.path().join("server-ca.key");
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap(); // reading a directory fails, even as root
    let err = Pki::load_or_create(tmp.path(), &opts(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("server-ca.key"), "{err}");
}

#[test]
fn request_header_ca_is_optional() {
    let tmp = tempfile::tempdir().unwrap();
    let o = ServingOptions {
        request_header_ca: true,
        ..opts(&[])
    };
    let pki = Pki::load_or_create(tmp.path(), &o).unwrap();
    let ca = pki.request_header_ca().unwrap();
    let proxy = der(&pki.auth_proxy().unwrap().cert_pem);
    ca.verify(&proxy, Usage::ClientAuth, now()).unwrap();
    assert!(pki
        .client_ca()
        .verify(&proxy, Usage::ClientAuth, now())
        .is_err());
    assert_eq!(
        certs::identity(&proxy).unwrap().common_name,
        "system:auth-proxy"
    );
    assert_eq!(mode(&tmp.path().join("request-header-ca.key")), 0o600);
}

#[test]
fn component_certs_and_node_join() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &opts(&[])).unwrap();
    let a = pki
        .client_cert("controller", "system:kube-controller-manager", &[])
        .unwrap();
    let b = pki
        .client_cert("controller", "system:kube-controller-manager", &[])
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(mode(&tmp.path().join("client-controller.key")), 0o600);

    let issued = pki
        .issue_client_cert("bob", &["dev".into()], Duration::hours(1))
        .unwrap();
    pki.client_ca()
        .verify(&der(&issued.cert_pem), Usage::ClientAuth, now())
        .unwrap();
    assert!(pki
        .client_ca()
        .verify(
            &der(&issued.cert_pem),
            Usage::ClientAuth,
            now() + Duration::hours(2)
        )
        .is_err());

    let request = rkube_pki::node_csr("worker-1").unwrap();
    let cert = pki
        .sign_csr(&request.cert_pem, &CsrPolicy::Node { name: None })
        .unwrap();
    pki.client_ca()
        .verify(&der(&cert), Usage::ClientAuth, now())
        .unwrap();
}

#[test]
fn service_ip_is_first_of_cidr() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(first_service_ip("10.43.0.0/16").unwrap(), ip("10.43.0.1"));
    assert_eq!(first_service_ip("10.43.7.9/16").unwrap(), ip("10.43.0.1"));
    assert_eq!(first_service_ip("fd00:43::/112").unwrap(), ip("fd00:43::1"));
    for bad in ["10.43.0.0", "10.43.0.0/33", "x/16", "10.0.0.0/32"] {
        assert!(first_service_ip(bad).is_err(), "{bad}");
    }
    let o = ServingOptions {
        service_ip: ip("10.96.0.1"),
        cluster_domain: "corp.local".into(),
        ..opts(&[])
    };
    let sans = o.required_sans().unwrap();
    assert!(sans.ips.contains(&ip("10.96.0.1")) && !sans.ips.contains(&ip("10.43.0.1")));
    assert!(sans.covers(
        &SubjectAltNames::parse(&[
            "kubernetes.default.svc.corp.local",
            "localhost",
            "127.0.0.1"
        ])
        .unwrap()
    ));
}
