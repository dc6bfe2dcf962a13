use std::os::unix::fs::PermissionsExt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rkube_pki::sa_token::{self, ObjectRef, SaKey, TokenSpec, DEFAULT_ISSUER};
use time::Duration;

use crate::now;

fn key() -> SaKey {
    let dir = tempfile::tempdir().unwrap();
    SaKey::load_or_create(&dir.path().join("service.key")).unwrap()
}

fn spec() -> TokenSpec {
    TokenSpec {
        namespace: "default".into(),
        service_account: "builder".into(),
        service_account_uid: "1111-2222".into(),
        audiences: vec![
            "https://kubernetes.default.svc.cluster.local".into(),
            "vault".into(),
        ],
        expiration: Duration::hours(1),
        pod: Some(ObjectRef {
            name: "web-0".into(),
            uid: "3333".into(),
        }),
        secret: None,
        node: Some(ObjectRef {
            name: "node-1".into(),
            uid: "4444".into(),
        }),
    }
}

fn aud(a: &str) -> Vec<String> {
    vec![a.to_string()]
}

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn token_has_upstream_claim_layout() {
    let k = key();
    let t0 = now();
    let token = k.issue(&spec(), t0).unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], k.key_id());

    let p = payload(&token);
    assert_eq!(p["iss"], DEFAULT_ISSUER);
    assert_eq!(p["sub"], "system:serviceaccount:default:builder");
    assert_eq!(
        p["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local", "vault"])
    );
    assert_eq!(p["iat"], t0.unix_timestamp());
    assert_eq!(p["nbf"], t0.unix_timestamp());
    assert_eq!(p["exp"], t0.unix_timestamp() + 3600);
    assert_eq!(p["jti"].as_str().unwrap().len(), 36);
    assert_eq!(
        p["kubernetes.io"],
        serde_json::json!({
            "namespace": "default",
            "serviceaccount": {"name": "builder", "uid": "1111-2222"},
            "pod": {"name": "web-0", "uid": "3333"},
            "node": {"name": "node-1", "uid": "4444"},
        })
    );
}

#[test]
fn verify_round_trip_and_audience() {
    let k = key();
    let token = k.issue(&spec(), now()).unwrap();
    let claims = k.verify(&token, &aud("vault"), now()).unwrap();
    assert_eq!(claims.kubernetes.serviceaccount.name, "builder");
    assert_eq!(claims.kubernetes.pod.unwrap().name, "web-0");
    let err = k.verify(&token, &aud("other"), now()).unwrap_err();
    assert!(matches!(err, sa_token::Error::Audience { .. }), "{err}");
    assert!(k.verify(&token, &[], now()).is_err());
}

#[test]
fn expiry_and_not_before_use_the_given_clock() {
    let k = key();
    let t0 = now();
    let token = k.issue(&spec(), t0).unwrap();
    let a = aud("vault");
    k.verify(&token, &a, t0 + Duration::minutes(59)).unwrap();
    assert!(matches!(
        k.verify(&token, &a, t0 + Duration::hours(2)),
        Err(sa_token::Error::Expired)
    ));
    assert!(matches!(
        k.verify(&token, &a, t0 - Duration::hours(1)),
        Err(sa_token::Error::NotYetValid)
    ));
}

#[test]
fn foreign_key_tampering_and_issuer_are_rejected() {
    let (k, other) = (key(), key());
    let token = k.issue(&spec(), now()).unwrap();
    assert!(matches!(
        other.verify(&token, &aud("vault"), now()),
        Err(sa_token::Error::Invalid(_))
    ));

    // Swap in a payload naming another service account, keep the signature.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut p = payload(&token);
    p["sub"] = "system:serviceaccount:kube-system:admin".into();
    p["kubernetes.io"]["namespace"] = "kube-system".into();
    p["kubernetes.io"]["serviceaccount"]["name"] = "admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(p.to_string());
    assert!(k.verify(&parts.join("."), &aud("vault"), now()).is_err());

    let other_issuer = SaKey::from_pem(k.key_pem())
        .unwrap()
        .with_issuer("https://rkube.example");
    let token = other_issuer.issue(&spec(), now()).unwrap();
    assert!(matches!(
        k.verify(&token, &aud("vault"), now()),
        Err(sa_token::Error::Invalid(_))
    ));
    other_issuer.verify(&token, &aud("vault"), now()).unwrap();

    for junk in ["", "a.b.c", "not a jwt"] {
        assert!(k.verify(junk, &aud("vault"), now()).is_err());
    }
}

#[test]
fn single_string_audience_and_subject_mismatch() {
    let k = key();
    let t = now().unix_timestamp();
    let claims = |sub: &str| {
        serde_json::json!({
            "iss": DEFAULT_ISSUER, "sub": sub, "aud": "vault",
            "exp": t + 60, "iat": t, "nbf": t,
            "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u"}},
        })
    };
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(k.key_pem().as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let good = jsonwebtoken::encode(&header, &claims("system:serviceaccount:ns:sa"), &enc).unwrap();
    assert_eq!(
        k.verify(&good, &aud("vault"), now()).unwrap().aud,
        aud("vault")
    );
    let bad =
        jsonwebtoken::encode(&header, &claims("system:serviceaccount:ns:other"), &enc).unwrap();
    assert!(matches!(
        k.verify(&bad, &aud("vault"), now()),
        Err(sa_token::Error::Invalid(_))
    ));
}

#[test]
fn jwk_verifies_tokens() {
    let k = key();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk()).unwrap();
    assert_eq!(jwk.common.key_id.as_deref(), Some(k.key_id()));
    let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let token = k.issue(&spec(), now()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["vault"]);
    jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &v).unwrap();
}

#[test]
fn key_file_is_private_reused_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service.key");
    let a = SaKey::load_or_create(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let b = SaKey::load_or_create(&path).unwrap();
    assert_eq!(a.key_id(), b.key_id());
    b.verify(&a.issue(&spec(), now()).unwrap(), &aud("vault"), now())
        .unwrap();

    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(&path, ed.serialize_pem()).unwrap();
    let err = SaKey::load_or_create(&path).unwrap_err().to_string();
    assert!(
        err.contains("service.key") && err.contains("P-256"),
        "{err}"
    );
}

#[test]
fn bad_specs_are_errors() {
    let k = key();
    let mut s = spec();
    s.expiration = Duration::ZERO;
    assert!(k.issue(&s, now()).is_err());
    let mut s = spec();
    s.namespace.clear();
    assert!(k.issue(&s, now()).is_err());
}
