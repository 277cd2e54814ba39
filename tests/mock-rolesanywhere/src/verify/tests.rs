//! The verifier on the recorded vector requests at their own timestamp, and on copies
//! changed one field at a time.

use super::*;
use crate::config::{Config, EC_TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, RSA_TRUST_ANCHOR_ARN};
use crate::http::read_request;
use crate::responses::{ACCESS_DENIED, INVALID_SIGNATURE, UNTRUSTED_CERTIFICATE};

/// 20261204T120000Z, the timestamp of every vector.
const VECTOR_TIME: i64 = 1_796_385_600;

fn verifier() -> Verifier {
    let config = Config::test_pki().unwrap();
    Verifier {
        region: config.region,
        anchors: config
            .trust_anchors
            .into_iter()
            .map(|(arn, der)| Anchor {
                root: Certificate::from_der(der, &arn).unwrap(),
                arn,
            })
            .collect(),
        profiles: None,
    }
}

fn vector(name: &str) -> Request {
    let path = format!(
        "{}/../vectors/{name}/request.http",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).unwrap();
    read_request(&mut &bytes[..]).unwrap()
}

fn set_header(request: &mut Request, name: &str, value: String) {
    let slot = request
        .headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .unwrap();
    slot.1 = value;
}

fn header(request: &Request, name: &str) -> String {
    request.header_values(name).next().unwrap().to_owned()
}

fn reject_at(verifier: &Verifier, request: &Request, now: i64) -> Rejection {
    verifier.verify(request, now).unwrap_err()
}

#[test]
fn verify_accepts_all_vectors() {
    let verifier = verifier();
    for name in ["rsa_chain", "rsa_direct", "rsa_direct_rsn", "ec_chain"] {
        let result = verifier.verify(&vector(name), VECTOR_TIME);
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}

#[test]
fn verify_reports_session_facts() {
    let accepted = verifier()
        .verify(&vector("rsa_chain"), VECTOR_TIME)
        .unwrap();
    assert_eq!(accepted.duration_seconds, 3600);
    assert_eq!(accepted.session.role_arn, ROLE_ARN);
    assert_eq!(accepted.session.role_session_name, "c0ffee0123456789abcdef");
    assert_eq!(accepted.session.source_identity, "CN=rsa-workload");
    assert!(
        accepted
            .session
            .subject_arn
            .starts_with("arn:aws:rolesanywhere:us-east-1:123456789012:subject/"),
        "{}",
        accepted.session.subject_arn
    );

    let named = verifier()
        .verify(&vector("rsa_direct_rsn"), VECTOR_TIME)
        .unwrap();
    assert_eq!(named.session.role_session_name, "ci-session-01");
    assert_eq!(named.duration_seconds, 43_200);
}

#[test]
fn verify_allows_five_minutes_of_skew() {
    let verifier = verifier();
    let request = vector("rsa_direct");
    assert!(verifier.verify(&request, VECTOR_TIME + 300).is_ok());
    assert!(verifier.verify(&request, VECTOR_TIME - 300).is_ok());

    let late = reject_at(&verifier, &request, VECTOR_TIME + 301);
    assert_eq!(late.status, 403);
    assert_eq!(late.error_type, ACCESS_DENIED);
    assert!(late.message.starts_with("Signature expired"), "{late:?}");

    let early = reject_at(&verifier, &request, VECTOR_TIME - 301);
    assert!(
        early.message.starts_with("Signature not yet current"),
        "{early:?}"
    );
}

#[test]
fn verify_rejects_changed_body() {
    let mut request = vector("rsa_chain");
    let at = request.body.iter().position(|&b| b == b'3').unwrap();
    request.body[at] = b'4';
    let rejection = reject_at(&verifier(), &request, VECTOR_TIME);
    assert_eq!(rejection.status, 403);
    assert_eq!(rejection.message, INVALID_SIGNATURE);
}

#[test]
fn verify_rejects_changed_signed_header() {
    let mut request = vector("ec_chain");
    set_header(&mut request, "Content-Type", "application/json".into());
    let rejection = reject_at(&verifier(), &request, VECTOR_TIME);
    assert_eq!(rejection.message, INVALID_SIGNATURE);
    assert!(
        rejection.reason.contains("does not verify"),
        "{rejection:?}"
    );
}

#[test]
fn verify_ignores_unsigned_header() {
    let mut request = vector("rsa_direct");
    request
        .headers
        .push(("User-Agent".into(), "python-urllib3".into()));
    assert!(verifier().verify(&request, VECTOR_TIME).is_ok());
}

#[test]
fn verify_rejects_unsigned_chain_header() {
    let mut request = vector("rsa_chain");
    let authorization = header(&request, "Authorization").replace(";x-amz-x509-chain", "");
    set_header(&mut request, "Authorization", authorization);
    let rejection = reject_at(&verifier(), &request, VECTOR_TIME);
    assert_eq!(rejection.message, INVALID_SIGNATURE);
    assert!(
        rejection.reason.contains("x-amz-x509-chain"),
        "{rejection:?}"
    );
}

#[test]
fn verify_rejects_wrong_scope_fields() {
    let verifier = verifier();
    let cases = [
        (
            "AWS4-X509-RSA-SHA256",
            "AWS4-X509-ECDSA-SHA256",
            "algorithm",
        ),
        ("Credential=4179", "Credential=5179", "serial"),
        ("/20261204/", "/20261205/", "date"),
        ("/us-east-1/", "/eu-west-1/", "region"),
        ("/rolesanywhere/", "/sts/", "scope"),
    ];
    for (from, to, expected) in cases {
        let mut request = vector("rsa_direct");
        let authorization = header(&request, "Authorization").replacen(from, to, 1);
        set_header(&mut request, "Authorization", authorization);
        let rejection = reject_at(&verifier, &request, VECTOR_TIME);
        assert_eq!(rejection.status, 403, "{from} -> {to}");
        assert_eq!(rejection.message, INVALID_SIGNATURE, "{from} -> {to}");
        assert!(
            rejection.reason.contains(expected),
            "{from} -> {to}: {rejection:?}"
        );
    }
}

#[test]
fn verify_rejects_other_region() {
    let mut verifier = verifier();
    verifier.region = "eu-west-1".into();
    let rejection = reject_at(&verifier, &vector("ec_chain"), VECTOR_TIME);
    assert_eq!(rejection.message, INVALID_SIGNATURE);
    assert!(rejection.reason.contains("eu-west-1"), "{rejection:?}");
}

#[test]
fn verify_rejects_missing_and_repeated_headers() {
    let verifier = verifier();

    let mut missing = vector("rsa_direct");
    missing
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("X-Amz-Date"));
    let rejection = reject_at(&verifier, &missing, VECTOR_TIME);
    assert_eq!(rejection.status, 400);
    assert_eq!(rejection.message, "missing header X-Amz-Date");

    let mut repeated = vector("rsa_direct");
    let leaf = header(&repeated, "X-Amz-X509");
    repeated.headers.push(("x-amz-x509".into(), leaf));
    let rejection = reject_at(&verifier, &repeated, VECTOR_TIME);
    assert_eq!(rejection.status, 400);
    assert!(rejection.message.contains("X-Amz-X509"), "{rejection:?}");
}

#[test]
fn verify_rejects_bad_header_values() {
    let verifier = verifier();
    let cases = [
        ("X-Amz-Date", "2026-12-04T12:00:00Z", "X-Amz-Date"),
        ("X-Amz-X509", "not base64!", "X-Amz-X509"),
        ("X-Amz-X509", "AAAA", "X-Amz-X509"),
        ("Authorization", "AWS4-X509-RSA-SHA256", "Authorization"),
    ];
    for (name, value, expected) in cases {
        let mut request = vector("rsa_direct");
        set_header(&mut request, name, value.into());
        let rejection = reject_at(&verifier, &request, VECTOR_TIME);
        assert_eq!(rejection.status, 400, "{name}: {value}");
        assert!(
            rejection.message.contains(expected),
            "{name}: {value}: {rejection:?}"
        );
    }
}

#[test]
fn verify_rejects_long_chain_header() {
    let mut request = vector("rsa_chain");
    let one = header(&request, "X-Amz-X509-Chain");
    set_header(&mut request, "X-Amz-X509-Chain", vec![one; 6].join(","));
    let rejection = reject_at(&verifier(), &request, VECTOR_TIME);
    assert_eq!(rejection.status, 400);
    assert!(rejection.message.contains("at most 5"), "{rejection:?}");
}

#[test]
fn verify_rejects_anchor_with_other_root() {
    let mut verifier = verifier();
    // The RSA anchor ARN now has the EC root, so the RSA leaf cannot reach it.
    let ec_root = verifier.anchors[1].root.clone();
    verifier.anchors[0].root = ec_root;
    let rejection = reject_at(&verifier, &vector("rsa_chain"), VECTOR_TIME);
    assert_eq!(rejection.status, 403);
    assert_eq!(rejection.message, UNTRUSTED_CERTIFICATE);
    assert!(
        rejection.reason.contains(RSA_TRUST_ANCHOR_ARN),
        "{rejection:?}"
    );
}

#[test]
fn verify_rejects_unconfigured_anchor() {
    let mut verifier = verifier();
    verifier.anchors.retain(|a| a.arn == EC_TRUST_ANCHOR_ARN);
    let rejection = reject_at(&verifier, &vector("rsa_direct"), VECTOR_TIME);
    assert_eq!(rejection.message, UNTRUSTED_CERTIFICATE);
    assert!(rejection.reason.contains("not configured"), "{rejection:?}");
}

fn leaf_of(request: &Request) -> Certificate {
    let der = base64::engine::general_purpose::STANDARD
        .decode(header(request, "X-Amz-X509"))
        .unwrap();
    Certificate::from_der(der, "X-Amz-X509").unwrap()
}

#[test]
fn check_trust_rejects_time_outside_validity() {
    let verifier = verifier();
    let leaf = leaf_of(&vector("rsa_direct"));
    // The leaf is valid from 2026-01-01 to 2030-12-31; this is 2031-01-02.
    let after = 1_924_992_000 + 86_400;
    let rejection = check_trust(&leaf, &[], &verifier.anchors[0], after).unwrap_err();
    assert_eq!(rejection.message, UNTRUSTED_CERTIFICATE);
    assert!(rejection.reason.contains("valid from"), "{rejection:?}");
    assert!(check_trust(&leaf, &[], &verifier.anchors[0], VECTOR_TIME).is_ok());
}

#[test]
fn check_trust_rejects_wrong_chain() {
    let verifier = verifier();
    let leaf = leaf_of(&vector("rsa_chain"));
    let unrelated = leaf_of(&vector("rsa_direct"));

    let rejection = check_trust(&leaf, &[], &verifier.anchors[0], VECTOR_TIME).unwrap_err();
    assert_eq!(rejection.message, UNTRUSTED_CERTIFICATE);
    assert!(
        rejection.reason.contains("does not chain to"),
        "{rejection:?}"
    );

    let rejection =
        check_trust(&leaf, &[unrelated], &verifier.anchors[0], VECTOR_TIME).unwrap_err();
    assert_eq!(rejection.message, UNTRUSTED_CERTIFICATE);
    assert!(rejection.reason.contains("did not issue"), "{rejection:?}");
}

#[test]
fn verify_checks_profiles_and_roles() {
    let mut verifier = verifier();
    verifier.profiles = Some(vec![(PROFILE_ARN.into(), vec![ROLE_ARN.into()])]);
    assert!(verifier.verify(&vector("rsa_chain"), VECTOR_TIME).is_ok());

    verifier.profiles = Some(vec![(
        PROFILE_ARN.into(),
        vec!["arn:aws:iam::123456789012:role/Other".into()],
    )]);
    let rejection = reject_at(&verifier, &vector("rsa_chain"), VECTOR_TIME);
    assert_eq!(rejection.status, 403);
    assert!(rejection.message.contains(ROLE_ARN), "{rejection:?}");

    verifier.profiles = Some(Vec::new());
    let rejection = reject_at(&verifier, &vector("rsa_chain"), VECTOR_TIME);
    assert_eq!(rejection.status, 404);
    assert_eq!(rejection.error_type, "ResourceNotFoundException");
    assert!(rejection.message.contains(PROFILE_ARN), "{rejection:?}");
}

#[test]
fn verify_rejects_other_routes() {
    let verifier = verifier();
    let mut other_path = vector("rsa_direct");
    other_path.target = "/sessions/x".into();
    assert_eq!(reject_at(&verifier, &other_path, VECTOR_TIME).status, 404);

    let mut other_method = vector("rsa_direct");
    other_method.method = "PUT".into();
    assert_eq!(reject_at(&verifier, &other_method, VECTOR_TIME).status, 405);
}
