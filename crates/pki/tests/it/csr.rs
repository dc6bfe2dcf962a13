use rkube_pki::csr::{self, CsrPolicy};
use rkube_pki::{certs, node_csr, sign_csr, Usage};
use time::Duration;

use crate::{der, now, test_ca};

const YEAR: Duration = Duration::days(365);

fn node_policy() -> CsrPolicy {
    CsrPolicy::Node { name: None }
}

/// A CSR with an arbitrary subject, as a misbehaving agent could send.
fn csr_for(cn: &str, orgs: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let types = [
        rcgen::DnType::OrganizationName,
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]),
    ];
    for (ty, o) in types.into_iter().zip(orgs) {
        params.distinguished_name.push(ty, *o);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn node_csr_is_signed_into_a_client_cert() {
    let ca = test_ca("client-ca");
    let request = node_csr("worker-1").unwrap();
    assert!(request.cert_pem.contains("BEGIN CERTIFICATE REQUEST"));
    let cert_pem = sign_csr(&ca, &request.cert_pem, &node_policy(), YEAR, now()).unwrap();
    let cert = der(&cert_pem);
    ca.verify(&cert, Usage::ClientAuth, now()).unwrap();
    assert!(ca.verify(&cert, Usage::ServerAuth, now()).is_err());
    let id = certs::identity(&cert).unwrap();
    assert_eq!(id.common_name, "system:node:worker-1");
    assert_eq!(id.organizations, ["system:nodes"]);

    // The certificate is for the CSR's key, which stays with the agent.
    let serving = rkube_pki::CertKey {
        cert_pem,
        key_pem: request.key_pem,
    };
    rkube_pki::tls::client_config(ca.cert_pem(), Some(&serving)).unwrap();

    let named = CsrPolicy::Node {
        name: Some("worker-1".into()),
    };
    sign_csr(&ca, &request.cert_pem, &named, YEAR, now()).unwrap();
    let other = CsrPolicy::Node {
        name: Some("worker-2".into()),
    };
    assert!(matches!(
        sign_csr(&ca, &request.cert_pem, &other, YEAR, now()),
        Err(csr::Error::Denied(_))
    ));
}

#[test]
fn node_policy_rejects_other_subjects() {
    let ca = test_ca("client-ca");
    for (cn, orgs) in [
        ("admin", vec!["system:nodes"]),
        ("system:node:", vec!["system:nodes"]),
        ("system:node:Bad_Name", vec!["system:nodes"]),
        ("system:node:w1", vec![]),
        ("system:node:w1", vec!["system:masters"]),
        ("system:node:w1", vec!["system:nodes", "system:masters"]),
    ] {
        let pem = csr_for(cn, &orgs);
        let err = sign_csr(&ca, &pem, &node_policy(), YEAR, now()).unwrap_err();
        assert!(matches!(err, csr::Error::Denied(_)), "{cn} {orgs:?}: {err}");
    }
}

#[test]
fn client_policy_limits_organizations() {
    let ca = test_ca("client-ca");
    let policy = CsrPolicy::Client {
        organizations: vec!["dev".into()],
    };
    let cert = sign_csr(&ca, &csr_for("jane", &["dev"]), &policy, YEAR, now()).unwrap();
    assert_eq!(certs::identity(&der(&cert)).unwrap().organizations, ["dev"]);
    let err = sign_csr(
        &ca,
        &csr_for("jane", &["system:masters"]),
        &policy,
        YEAR,
        now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("system:masters"), "{err}");
}

#[test]
fn garbage_and_tampered_requests_are_invalid() {
    let ca = test_ca("client-ca");
    for bad in [
        "",
        "not pem",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let err = sign_csr(&ca, bad, &node_policy(), YEAR, now()).unwrap_err();
        assert!(matches!(err, csr::Error::Invalid(_)), "{bad:?}: {err}");
    }
    // Flip one byte inside the signed part: the self-signature no longer holds.
    let pem = node_csr("w1").unwrap().cert_pem;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = b64.decode(body).unwrap();
    let i = der.len() / 3;
    der[i] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        b64.encode(der)
    );
    let err = sign_csr(&ca, &tampered, &node_policy(), YEAR, now()).unwrap_err();
    assert!(matches!(err, csr::Error::Invalid(_)), "{err}");
}
