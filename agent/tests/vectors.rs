//! Replays the CreateSession requests that AWS's Python `iam-rolesanywhere-session` built
//! for the test PKI (tests/vectors): the canonical request and string to sign must match
//! byte for byte, and for RSA the whole Authorization header too.

// Test helpers outside #[test] functions panic on broken fixtures by design.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ra_agent::sigv4;
use ra_signer::file::FileSigner;
use ra_signer::{Certificate, Signer};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

struct Vector {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    canonical_request: String,
    string_to_sign: String,
    authorization: String,
    region: String,
    cert: PathBuf,
    key: PathBuf,
    chain: Option<PathBuf>,
}

fn load(name: &str) -> Vector {
    let dir = vectors().join(name);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&read("vector.json")).unwrap();
    let request = read("request.http");
    let head = request
        .split_once("\r\n\r\n")
        .or_else(|| request.split_once("\n\n"))
        .unwrap()
        .0;
    let headers = head
        .lines()
        .skip(1)
        .map(|line| line.trim_end_matches('\r'))
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    let inputs = &meta["inputs"];
    let pki = |key: &str| {
        inputs[key]
            .as_str()
            .map(|p| vectors().join(p.trim_start_matches("vectors/")))
    };
    Vector {
        headers,
        body: std::fs::read(dir.join("body.json")).unwrap(),
        canonical_request: read("canonical_request.txt"),
        string_to_sign: read("string_to_sign.txt"),
        authorization: read("authorization.txt"),
        region: inputs["region"].as_str().unwrap().to_owned(),
        cert: pki("cert").unwrap(),
        key: pki("key").unwrap(),
        chain: pki("chain"),
    }
}

/// Canonicalises the vector's request over the headers its Authorization signs.
fn replay(vector: &Vector) -> (sigv4::Canonical, String) {
    let signed_list = vector
        .authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    let signed: Vec<&str> = signed_list.split(';').collect();
    let headers: Vec<(&str, &str)> = vector
        .headers
        .iter()
        .filter(|(name, _)| signed.contains(&name.to_ascii_lowercase().as_str()))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let canonical = sigv4::canonical_request("POST", "/sessions", "", &headers, &vector.body);
    let amz_date = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"))
        .unwrap()
        .1;
    let algorithm = vector.authorization.split(' ').next().unwrap();
    let scope = sigv4::credential_scope(amz_date, &vector.region);
    let string_to_sign = sigv4::string_to_sign(algorithm, amz_date, &scope, &canonical.request);
    (canonical, string_to_sign)
}

fn check_rsa(name: &str) {
    let vector = load(name);
    let (canonical, string_to_sign) = replay(&vector);
    assert_eq!(
        canonical.request, vector.canonical_request,
        "{name}: canonical request"
    );
    assert_eq!(
        string_to_sign, vector.string_to_sign,
        "{name}: string to sign"
    );

    let signer = FileSigner::open(&vector.cert, &vector.key, vector.chain.as_deref()).unwrap();
    let signature = signer.sign(string_to_sign.as_bytes()).unwrap();
    let cert = Certificate::from_der(signer.certificate().to_vec(), "leaf").unwrap();
    let amz_date = &vector.string_to_sign.lines().nth(1).unwrap();
    let authorization = sigv4::authorization(
        signer.algorithm().aws_name(),
        &cert.serial_decimal(),
        &sigv4::credential_scope(amz_date, &vector.region),
        &canonical.signed_headers,
        &signature,
    );
    assert_eq!(
        authorization, vector.authorization,
        "{name}: Authorization header"
    );
}

#[test]
fn vector_rsa_chain_matches_byte_for_byte() {
    check_rsa("rsa_chain");
}

#[test]
fn vector_rsa_direct_matches_byte_for_byte() {
    check_rsa("rsa_direct");
}

#[test]
fn vector_rsa_direct_rsn_matches_byte_for_byte() {
    check_rsa("rsa_direct_rsn");
}

#[test]
fn vector_ec_chain_canonicalises_and_verifies() {
    let vector = load("ec_chain");
    let (canonical, string_to_sign) = replay(&vector);
    assert_eq!(canonical.request, vector.canonical_request);
    assert_eq!(string_to_sign, vector.string_to_sign);

    let signature_hex = vector
        .authorization
        .rsplit("Signature=")
        .next()
        .unwrap()
        .trim();
    let signature: Vec<u8> = (0..signature_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&signature_hex[i..i + 2], 16).unwrap())
        .collect();
    let certs = ra_signer::read_certificates(&vector.cert).unwrap();
    assert!(ra_signer::verify_signature(
        &certs[0],
        string_to_sign.as_bytes(),
        &signature
    ));
    assert!(!ra_signer::verify_signature(
        &certs[0],
        b"tampered",
        &signature
    ));

    // Our own EC signature over the same string verifies too.
    let signer = FileSigner::open(&vector.cert, &vector.key, vector.chain.as_deref()).unwrap();
    assert_eq!(signer.algorithm().aws_name(), "AWS4-X509-ECDSA-SHA256");
    let ours = signer.sign(string_to_sign.as_bytes()).unwrap();
    assert!(ra_signer::verify_signature(
        &certs[0],
        string_to_sign.as_bytes(),
        &ours
    ));
}

#[test]
fn vector_serials_are_decimal_in_credential() {
    for name in ["rsa_chain", "rsa_direct", "ec_chain"] {
        let vector = load(name);
        let cert = &ra_signer::read_certificates(&vector.cert).unwrap()[0];
        let expected = format!("Credential={}/", cert.serial_decimal());
        assert!(vector.authorization.contains(&expected), "{name}");
    }
}
