//! The canonicaliser against the four CreateSession vectors in `tests/vectors`, which an
//! independent client produced. The clock is not checked: the vectors are fixed at
//! 20261204T120000Z.
// Helpers here run only inside tests, where a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use base64::Engine as _;
use mock_rolesanywhere::canonical::{self, Authorization};
use ra_signer::{Certificate, verify_signature};

const VECTORS: [&str; 4] = ["rsa_chain", "rsa_direct", "rsa_direct_rsn", "ec_chain"];

fn vector_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vectors")
        .join(name)
}

fn read(name: &str, file: &str) -> String {
    std::fs::read_to_string(vector_dir(name).join(file)).unwrap()
}

/// Splits `request.http` into headers and body.
fn request_parts(name: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let text = read(name, "request.http");
    let (head, body) = text
        .split_once("\n\n")
        .or_else(|| text.split_once("\r\n\r\n"))
        .unwrap();
    let headers = head
        .lines()
        .skip(1)
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    (headers, body.as_bytes().to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap()
}

#[test]
fn body_matches_body_json() {
    for name in VECTORS {
        let (_, body) = request_parts(name);
        assert_eq!(body, read(name, "body.json").as_bytes(), "{name}");
    }
}

#[test]
fn canonical_request_matches_vectors() {
    for name in VECTORS {
        let (headers, body) = request_parts(name);
        let auth = Authorization::parse(header(&headers, "Authorization")).unwrap();
        let canonical_request =
            canonical::canonical_request(&headers, &auth.signed_headers, &body).unwrap();
        assert_eq!(
            canonical_request,
            read(name, "canonical_request.txt"),
            "{name}"
        );
    }
}

#[test]
fn string_to_sign_matches_vectors() {
    for name in VECTORS {
        let (headers, body) = request_parts(name);
        let auth = Authorization::parse(header(&headers, "Authorization")).unwrap();
        let canonical_request =
            canonical::canonical_request(&headers, &auth.signed_headers, &body).unwrap();
        let string_to_sign = canonical::string_to_sign(
            &auth.algorithm,
            header(&headers, "X-Amz-Date"),
            &auth.scope(),
            &canonical_request,
        );
        assert_eq!(string_to_sign, read(name, "string_to_sign.txt"), "{name}");
    }
}

#[test]
fn authorization_matches_header_and_leaf() {
    for name in VECTORS {
        let (headers, _) = request_parts(name);
        let authorization = read(name, "authorization.txt");
        assert_eq!(header(&headers, "Authorization"), authorization, "{name}");

        let auth = Authorization::parse(&authorization).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(header(&headers, "X-Amz-X509"))
            .unwrap();
        let leaf = Certificate::from_der(der, name).unwrap();
        assert_eq!(auth.serial, leaf.serial_decimal(), "{name}");
        assert_eq!(
            auth.algorithm,
            leaf.key_kind().algorithm().aws_name(),
            "{name}"
        );
        assert_eq!(auth.region, "us-east-1", "{name}");
        assert_eq!(auth.date, "20261204", "{name}");
    }
}

#[test]
fn signature_verifies_with_leaf() {
    for name in VECTORS {
        let (headers, _) = request_parts(name);
        let auth = Authorization::parse(header(&headers, "Authorization")).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(header(&headers, "X-Amz-X509"))
            .unwrap();
        let leaf = Certificate::from_der(der, name).unwrap();
        let string_to_sign = read(name, "string_to_sign.txt");
        assert!(
            verify_signature(&leaf, string_to_sign.as_bytes(), &auth.signature),
            "{name}: signature does not verify"
        );

        let mut tampered = string_to_sign.into_bytes();
        tampered[0] ^= 1;
        assert!(
            !verify_signature(&leaf, &tampered, &auth.signature),
            "{name}: signature verifies a changed message"
        );
    }
}
