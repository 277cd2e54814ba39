//! The `mock-rolesanywhere` binary: startup line, one signed request, log lines and flag
//! errors.
// Helpers here run only inside tests, where a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;
use mock_rolesanywhere::{
    EC_TRUST_ANCHOR_ARN, RSA_TRUST_ANCHOR_ARN, UNTRUSTED_CERTIFICATE, pki_path,
};

const BINARY: &str = env!("CARGO_BIN_EXE_mock-rolesanywhere");

/// Starts the binary with `args` and returns it with the address from its first line.
fn spawn(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, address)
}

/// Stops `child` and returns what it wrote to stderr.
fn stop(mut child: Child) -> String {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

fn post(address: SocketAddr, signer: &ra_signer::file::FileSigner, body: &[u8]) -> Reply {
    let headers = signed_headers(
        signer,
        &address.to_string(),
        &amz_date(unix_now()),
        "us-east-1",
        body,
    );
    exchange_at(
        address,
        &pki_path("tls/ca.pem"),
        &request_bytes(&headers, body),
    )
    .unwrap()
}

#[test]
fn binary_defaults_issue_credentials() {
    let (child, address) = spawn(&[]);
    assert!(address.ip().is_loopback());
    assert_ne!(address.port(), 0);

    let signer = signer("ec/leaf.pem", "ec/leaf.key", Some("ec/chain.pem"));
    let reply = post(address, &signer, &body(EC_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let credentials = reply.json()["credentialSet"][0]["credentials"].clone();

    let stderr = stop(child);
    assert!(stderr.contains("POST /sessions -> 201"), "{stderr}");
    for field in ["accessKeyId", "secretAccessKey", "sessionToken"] {
        let secret = credentials[field].as_str().unwrap();
        assert!(!stderr.contains(secret), "stderr shows {field}: {stderr}");
    }
}

#[test]
fn binary_trust_anchor_flag_replaces_defaults() {
    let anchor = format!(
        "{EC_TRUST_ANCHOR_ARN}={}",
        pki_path("ec/root.pem").display()
    );
    let (child, address) = spawn(&["--listen", "127.0.0.1:0", "--trust-anchor", &anchor]);

    let signer = signer("rsa/leaf.pem", "rsa/leaf.key", Some("rsa/chain.pem"));
    let reply = post(address, &signer, &body(RSA_TRUST_ANCHOR_ARN, 3600));
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), UNTRUSTED_CERTIFICATE);

    let stderr = stop(child);
    assert!(stderr.contains("not configured"), "{stderr}");
}

#[test]
fn binary_rejects_bad_flags() {
    let cases: [(&[&str], &str); 4] = [
        (&["--listen", "localhost"], "--listen"),
        (&["--tls-cert", "x.pem"], "--tls-key"),
        (&["--trust-anchor", "arn-without-path"], "ARN=PATH"),
        (&["--bogus"], "--bogus"),
    ];
    for (args, expected) in cases {
        let output = Command::new(BINARY).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
