//! The server over real TLS on loopback: requests signed with the test PKI keys through
//! `ra_signer::file::FileSigner`, the recorded vector requests, and scripted faults.
// Helpers here run only inside tests, where a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mock_rolesanywhere::{
    ACCESS_DENIED, Config, EC_TRUST_ANCHOR_ARN, INVALID_SIGNATURE, PROFILE_ARN, ROLE_ARN,
    RSA_TRUST_ANCHOR_ARN, Scripted, Server, UNTRUSTED_CERTIFICATE, VALIDATION,
};

/// 20261204T120000Z, the timestamp of the recorded vectors.
const VECTOR_TIME: i64 = 1_796_385_600;

fn start() -> Server {
    Server::start(Config::test_pki().unwrap()).unwrap()
}

fn rsa_signer() -> ra_signer::file::FileSigner {
    signer("rsa/leaf.pem", "rsa/leaf.key", Some("rsa/chain.pem"))
}

#[test]
fn rsa_chain_round_trip_issues_credentials() {
    let server = start();
    let reply = post_signed(&server, &rsa_signer(), &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let date = parse_http_date(reply.header("Date").unwrap());
    assert!((date - unix_now()).abs() <= 2, "Date {date}");
    assert_eq!(reply.header("Content-Type"), Some("application/json"));

    let json = reply.json();
    let set = &json["credentialSet"][0];
    let credentials = &set["credentials"];
    let issued = server.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(credentials["accessKeyId"], issued[0].access_key_id.as_str());
    assert_eq!(
        credentials["secretAccessKey"],
        issued[0].secret_access_key.as_str()
    );
    assert_eq!(
        credentials["sessionToken"],
        issued[0].session_token.as_str()
    );
    assert_eq!(credentials["expiration"], issued[0].expiration.as_str());
    assert!(issued[0].access_key_id.starts_with("ASIA"));

    let expires_in = parse_expiration(&issued[0].expiration) - unix_now();
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");

    assert_eq!(set["roleArn"], ROLE_ARN);
    assert_eq!(set["sourceIdentity"], "CN=rsa-workload");
    assert_eq!(set["packedPolicySize"], 0);
    assert_eq!(
        set["assumedRoleUser"]["arn"],
        "arn:aws:sts::123456789012:assumed-role/ExampleRole/c0ffee0123456789abcdef"
    );
    assert!(
        json["subjectArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:rolesanywhere:us-east-1:123456789012:subject/")
    );
    assert_eq!(server.request_count(), 1);
    assert_eq!(server.last_rejection(), None);
}

#[test]
fn credentials_differ_per_request() {
    let server = start();
    let signer = rsa_signer();
    for _ in 0..2 {
        let reply = post_signed(&server, &signer, &body(RSA_TRUST_ANCHOR_ARN, 900));
        assert_eq!(reply.status, 201);
    }
    let issued = server.issued();
    assert_eq!(issued.len(), 2);
    assert_ne!(issued[0].access_key_id, issued[1].access_key_id);
    assert_ne!(issued[0].secret_access_key, issued[1].secret_access_key);
    assert_ne!(issued[0].session_token, issued[1].session_token);
}

#[test]
fn other_leaves_round_trip() {
    let server = start();
    let cases = [
        (
            "ec/leaf.pem",
            "ec/leaf.key",
            Some("ec/chain.pem"),
            EC_TRUST_ANCHOR_ARN,
        ),
        (
            "ec/leaf-direct.pem",
            "ec/leaf-direct.key",
            None,
            EC_TRUST_ANCHOR_ARN,
        ),
        (
            "rsa/leaf-direct.pem",
            "rsa/leaf-direct.key",
            None,
            RSA_TRUST_ANCHOR_ARN,
        ),
        // Issued with SHA-384, but the request signature is still SHA-256.
        (
            "rsa/leaf-sha384.pem",
            "rsa/leaf-sha384.key",
            Some("rsa/chain.pem"),
            RSA_TRUST_ANCHOR_ARN,
        ),
    ];
    for (cert, key, chain, anchor) in cases {
        let reply = post_signed(&server, &signer(cert, key, chain), &body(anchor, 3600));
        assert_eq!(
            reply.status,
            201,
            "{cert}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}

#[test]
fn recorded_vectors_accepted_at_their_time() {
    let server = start();
    server.set_clock_offset(VECTOR_TIME - unix_now());
    for name in ["rsa_chain", "rsa_direct", "rsa_direct_rsn", "ec_chain"] {
        let path = format!(
            "{}/../vectors/{name}/request.http",
            env!("CARGO_MANIFEST_DIR")
        );
        let reply = exchange(&server, &std::fs::read(path).unwrap()).unwrap();
        assert_eq!(
            reply.status,
            201,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let expiration = &server.issued()[2].expiration;
    assert_eq!(expiration.get(..13), Some("2026-12-05T00"), "{expiration}");
}

#[test]
fn flipped_signature_byte_rejected() {
    let server = start();
    let signer = rsa_signer();
    let body = body(RSA_TRUST_ANCHOR_ARN, 3600);
    let date = amz_date(unix_now());
    let mut headers = signed_headers(&signer, "127.0.0.1", &date, "us-east-1", &body);
    let authorization = headers.last().unwrap().1.clone();
    let (prefix, signature) = authorization.split_once("Signature=").unwrap();
    let first = if signature.starts_with('0') { '1' } else { '0' };
    let flipped = format!("{prefix}Signature={first}{}", &signature[1..]);
    set_header(&mut headers, "Authorization", flipped);

    let reply = exchange(&server, &request_bytes(&headers, &body)).unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-amzn-ErrorType"), Some(ACCESS_DENIED));
    assert_eq!(reply.message(), INVALID_SIGNATURE);
    assert!(reply.header("Date").is_some());
    let rejection = server.last_rejection().unwrap();
    assert!(
        rejection.reason.contains("does not verify"),
        "{rejection:?}"
    );
    assert!(server.issued().is_empty());
}

#[test]
fn rogue_leaf_untrusted() {
    let server = start();
    let rogue = signer("rogue/leaf.pem", "rogue/leaf.key", None);
    let reply = post_signed(&server, &rogue, &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-amzn-ErrorType"), Some(ACCESS_DENIED));
    assert_eq!(reply.message(), UNTRUSTED_CERTIFICATE);
    let rejection = server.last_rejection().unwrap();
    assert!(rejection.reason.contains("Rogue Root CA"), "{rejection:?}");
}

#[test]
fn leaf_without_chain_untrusted() {
    let server = start();
    let no_chain = signer("rsa/leaf.pem", "rsa/leaf.key", None);
    let reply = post_signed(&server, &no_chain, &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), UNTRUSTED_CERTIFICATE);
    let rejection = server.last_rejection().unwrap();
    assert!(
        rejection.reason.contains("does not chain to"),
        "{rejection:?}"
    );
}

#[test]
fn leaf_of_other_anchor_untrusted() {
    let server = start();
    let reply = post_signed(&server, &rsa_signer(), &body(EC_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), UNTRUSTED_CERTIFICATE);
    let rejection = server.last_rejection().unwrap();
    assert!(
        rejection.reason.contains(EC_TRUST_ANCHOR_ARN),
        "{rejection:?}"
    );
}

#[test]
fn expired_leaf_untrusted() {
    let server = start();
    let expired = signer(
        "rsa/leaf-expired.pem",
        "rsa/leaf-expired.key",
        Some("rsa/chain.pem"),
    );
    let reply = post_signed(&server, &expired, &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), UNTRUSTED_CERTIFICATE);
    let rejection = server.last_rejection().unwrap();
    assert!(rejection.reason.contains("rsa-expired"), "{rejection:?}");
    assert!(rejection.reason.contains("valid from"), "{rejection:?}");
}

#[test]
fn short_duration_rejected() {
    let server = start();
    let reply = post_signed(&server, &rsa_signer(), &body(RSA_TRUST_ANCHOR_ARN, 899));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("x-amzn-ErrorType"), Some(VALIDATION));
    assert!(
        reply.message().contains("durationSeconds"),
        "{}",
        reply.message()
    );
}

#[test]
fn amz_date_ten_minutes_off_rejected() {
    let server = start();
    let signer = rsa_signer();
    let body = body(RSA_TRUST_ANCHOR_ARN, 3600);
    for (offset, expected) in [
        (-600, "Signature expired"),
        (600, "Signature not yet current"),
    ] {
        let date = amz_date(unix_now() + offset);
        let headers = signed_headers(&signer, "127.0.0.1", &date, "us-east-1", &body);
        let reply = exchange(&server, &request_bytes(&headers, &body)).unwrap();
        assert_eq!(reply.status, 403, "offset {offset}");
        assert_eq!(reply.header("x-amzn-ErrorType"), Some(ACCESS_DENIED));
        assert!(reply.message().starts_with(expected), "{}", reply.message());
    }
}

#[test]
fn wrong_region_rejected() {
    let server = start();
    let signer = rsa_signer();
    let body = body(RSA_TRUST_ANCHOR_ARN, 3600);
    let headers = signed_headers(
        &signer,
        "127.0.0.1",
        &amz_date(unix_now()),
        "eu-west-1",
        &body,
    );
    let reply = exchange(&server, &request_bytes(&headers, &body)).unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), INVALID_SIGNATURE);
}

#[test]
fn unknown_profile_not_found() {
    let mut config = Config::test_pki().unwrap();
    config.profiles = Some(vec![(
        "arn:aws:rolesanywhere:us-east-1:123456789012:profile/other".into(),
        vec![ROLE_ARN.into()],
    )]);
    let server = Server::start(config).unwrap();
    let reply = post_signed(&server, &rsa_signer(), &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("x-amzn-ErrorType"),
        Some("ResourceNotFoundException")
    );
    assert!(reply.message().contains(PROFILE_ARN), "{}", reply.message());
}

#[test]
fn malformed_http_rejected() {
    let server = start();
    let reply = exchange(&server, b"POST /sessions HTTP/1.1\r\nHost 1\r\n\r\n").unwrap();
    assert_eq!(reply.status, 400);
    assert!(
        reply.message().contains("malformed HTTP"),
        "{}",
        reply.message()
    );
    assert_eq!(server.request_count(), 1);
}

#[test]
fn script_status_answers_without_verifying() {
    let server = start();
    server.push_script(Scripted::Status {
        status: 503,
        error_type: "ServiceUnavailableException".into(),
        message: "try later".into(),
    });
    server.push_script(Scripted::Status {
        status: 500,
        error_type: String::new(),
        message: "boom".into(),
    });
    assert_eq!(server.pending_script(), 2);

    let reply = exchange(&server, &request_bytes(&[], b"")).unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.header("x-amzn-ErrorType"),
        Some("ServiceUnavailableException")
    );
    assert_eq!(reply.message(), "try later");

    let reply = exchange(&server, &request_bytes(&[], b"")).unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("x-amzn-ErrorType"), None);
    assert_eq!(server.last_rejection().unwrap().message, "boom");

    // With the script used up, the same empty request is verified and rejected.
    assert_eq!(server.pending_script(), 0);
    let reply = exchange(&server, &request_bytes(&[], b"")).unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(server.request_count(), 3);
}

#[test]
fn script_reset_closes_without_response() {
    let server = start();
    server.push_script(Scripted::Reset);
    let body = body(RSA_TRUST_ANCHOR_ARN, 3600);
    let headers = signed_headers(
        &rsa_signer(),
        "127.0.0.1",
        &amz_date(unix_now()),
        "us-east-1",
        &body,
    );
    let result = exchange(&server, &request_bytes(&headers, &body));
    assert!(result.is_err(), "{result:?}");
    assert_eq!(server.request_count(), 1);
    assert!(server.issued().is_empty());

    let reply = exchange(&server, &request_bytes(&headers, &body)).unwrap();
    assert_eq!(reply.status, 201);
}

#[test]
fn script_stall_delays_response() {
    let server = start();
    server.push_script(Scripted::Stall(Duration::from_millis(700)));
    let started = Instant::now();
    let reply = post_signed(&server, &rsa_signer(), &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 201);
    assert!(started.elapsed() >= Duration::from_millis(700));
}

#[test]
fn script_expiration_sent_literally() {
    let server = start();
    server.push_script(Scripted::Expiration("not-a-time".into()));
    let reply = post_signed(&server, &rsa_signer(), &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.json()["credentialSet"][0]["credentials"]["expiration"],
        "not-a-time"
    );
    assert_eq!(server.issued()[0].expiration, "not-a-time");
}

#[test]
fn script_date_offset_skews_one_request() {
    let server = start();
    server.push_script(Scripted::DateOffset(3600));
    let signer = rsa_signer();
    let body = body(RSA_TRUST_ANCHOR_ARN, 3600);

    let reply = post_signed(&server, &signer, &body);
    assert_eq!(reply.status, 403);
    assert!(
        reply.message().starts_with("Signature expired"),
        "{}",
        reply.message()
    );
    // The Date header shows the shifted clock, so a client can measure the skew.
    let skew = parse_http_date(reply.header("Date").unwrap()) - unix_now();
    assert!((3598..=3600).contains(&skew), "Date is {skew} s ahead");

    let reply = post_signed(&server, &signer, &body);
    assert_eq!(reply.status, 201);
}

#[test]
fn clock_offset_applies_until_changed() {
    let server = start();
    let signer = rsa_signer();
    let body = body(RSA_TRUST_ANCHOR_ARN, 3600);
    server.set_clock_offset(-900);
    assert_eq!(server.clock_offset(), -900);
    let reply = post_signed(&server, &signer, &body);
    assert!(
        reply.message().starts_with("Signature not yet current"),
        "{}",
        reply.message()
    );
    server.set_clock_offset(0);
    assert_eq!(post_signed(&server, &signer, &body).status, 201);
}

#[test]
fn drop_stops_listening() {
    let server = start();
    let address = server.address();
    drop(server);
    assert!(std::net::TcpStream::connect(address).is_err());
}
