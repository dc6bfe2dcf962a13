use rkube_pki::certs::{self, renewal_reason, SubjectAltNames, LEAF_VALIDITY};
use rkube_pki::Usage;
use rustls_pki_types::ServerName;
use time::Duration;

use crate::{der, now, test_ca};

#[test]
fn sans_are_sorted_into_ips_and_names() {
    let sans = SubjectAltNames::parse(&["Node-1", "10.0.0.5", "::1", "api.example.com"]).unwrap();
    assert_eq!(
        sans.dns.iter().map(String::as_str).collect::<Vec<_>>(),
        ["api.example.com", "node-1"]
    );
    assert_eq!(sans.ips.len(), 2);
    for bad in ["", "has space", "bad_ünïcode", "a..b"] {
        let err = SubjectAltNames::parse(&[bad]).unwrap_err();
        assert!(matches!(err, certs::Error::InvalidSan(_)), "{bad:?}");
    }
}

#[test]
fn serving_cert_is_valid_for_every_name_and_only_those() {
    let ca = test_ca("server-ca");
    let sans = SubjectAltNames::parse(&["node-1", "kubernetes.default", "127.0.0.1", "10.43.0.1"])
        .unwrap();
    let pair = certs::issue_serving_cert(&ca, &sans, LEAF_VALIDITY, now()).unwrap();
    let cert = der(&pair.cert_pem);
    ca.verify(&cert, Usage::ServerAuth, now()).unwrap();
    // A serving certificate must not double as a client certificate.
    assert!(ca.verify(&cert, Usage::ClientAuth, now()).is_err());
    // Nor chain to another CA.
    assert!(test_ca("server-ca")
        .verify(&cert, Usage::ServerAuth, now())
        .is_err());

    let ee = webpki::EndEntityCert::try_from(&cert).unwrap();
    for name in ["node-1", "kubernetes.default", "127.0.0.1", "10.43.0.1"] {
        let sn = ServerName::try_from(name).unwrap();
        ee.verify_is_valid_for_subject_name(&sn)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let other = ServerName::try_from("evil.example.com").unwrap();
    assert!(ee.verify_is_valid_for_subject_name(&other).is_err());
    assert_eq!(certs::cert_sans(&cert).unwrap(), sans);
}

#[test]
fn client_cert_carries_cn_and_organizations() {
    let ca = test_ca("client-ca");
    for orgs in [
        vec![],
        vec!["system:masters".to_string()],
        vec!["a".into(), "b".into()],
    ] {
        let pair = certs::issue_client_cert(&ca, "jane", &orgs, LEAF_VALIDITY, now()).unwrap();
        let cert = der(&pair.cert_pem);
        ca.verify(&cert, Usage::ClientAuth, now()).unwrap();
        assert!(ca.verify(&cert, Usage::ServerAuth, now()).is_err());
        let id = certs::identity(&cert).unwrap();
        assert_eq!(id.common_name, "jane");
        assert_eq!(id.organizations, orgs);
    }
    let three: Vec<String> = ["a", "b", "c"].map(String::from).into();
    assert!(matches!(
        certs::issue_client_cert(&ca, "jane", &three, LEAF_VALIDITY, now()),
        Err(certs::Error::TooManyOrganizations(3))
    ));
    assert!(matches!(
        certs::issue_client_cert(&ca, "", &[], LEAF_VALIDITY, now()),
        Err(certs::Error::EmptyCommonName)
    ));
    assert!(matches!(
        certs::issue_client_cert(&ca, "x", &[], Duration::ZERO, now()),
        Err(certs::Error::InvalidValidity)
    ));
}

#[test]
fn validity_window_follows_the_given_clock() {
    let ca = test_ca("client-ca");
    let issued_at = now() - Duration::days(400);
    let pair = certs::issue_client_cert(&ca, "old", &[], LEAF_VALIDITY, issued_at).unwrap();
    let cert = der(&pair.cert_pem);
    assert!(ca.verify(&cert, Usage::ClientAuth, now()).is_err());
    ca.verify(&cert, Usage::ClientAuth, issued_at + Duration::days(1))
        .unwrap();
}

#[test]
fn renewal_reasons() {
    let ca = test_ca("server-ca");
    let sans = SubjectAltNames::parse(&["node-1", "127.0.0.1"]).unwrap();
    let fresh = certs::issue_serving_cert(&ca, &sans, LEAF_VALIDITY, now()).unwrap();
    assert_eq!(
        renewal_reason(&ca, &fresh, Usage::ServerAuth, Some(&sans), now()),
        None
    );
    // A subset of the names is still covered.
    let fewer = SubjectAltNames::parse(&["node-1"]).unwrap();
    assert_eq!(
        renewal_reason(&ca, &fresh, Usage::ServerAuth, Some(&fewer), now()),
        None
    );

    let more = SubjectAltNames::parse(&["node-1", "127.0.0.1", "10.1.2.3"]).unwrap();
    let reason = renewal_reason(&ca, &fresh, Usage::ServerAuth, Some(&more), now()).unwrap();
    assert!(reason.contains("names"), "{reason}");

    let old =
        certs::issue_serving_cert(&ca, &sans, LEAF_VALIDITY, now() - Duration::days(300)).unwrap();
    let reason = renewal_reason(&ca, &old, Usage::ServerAuth, Some(&sans), now()).unwrap();
    assert!(reason.contains("90 days"), "{reason}");

    let other_ca = test_ca("server-ca");
    assert!(renewal_reason(&other_ca, &fresh, Usage::ServerAuth, None, now()).is_some());

    let mut swapped = fresh.clone();
    swapped.key_pem = old.key_pem.clone();
    let reason = renewal_reason(&ca, &swapped, Usage::ServerAuth, None, now()).unwrap();
    assert!(reason.contains("does not match"), "{reason}");

    let mut garbage = fresh.clone();
    garbage.cert_pem = "junk".into();
    assert!(renewal_reason(&ca, &garbage, Usage::ServerAuth, None, now()).is_some());
}
