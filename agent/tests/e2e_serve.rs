//! `ra-agent serve` end to end: the refresh loop gets credentials from the verifying
//! endpoint and an SDK-style client reads them over IMDSv2 and the ECS endpoint.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use common::*;

/// Sends one HTTP/1.1 request and returns the status and body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Starts `serve` and returns the child and the address from its "serving" log line.
fn start_serve(list: &[String]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ra-agent"))
        .args(list)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(rest) = line.split("serving credentials on http://").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stderr so the agent never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[test]
fn serve_answers_imds_and_ecs_clients() {
    let server = start_server();
    let dir = TempDir::new("serve");
    let token_file = dir.path("ecs-token");
    let mut list = args(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--ecs-token-file",
        token_file.to_str().unwrap(),
        "--certificate",
        pki("rsa/leaf-fullchain.pem").to_str().unwrap(),
        "--private-key",
        pki("rsa/leaf.key").to_str().unwrap(),
    ]);
    list.extend(identity_args(&server, RSA_TRUST_ANCHOR_ARN));
    let (mut child, addr) = start_serve(&list);

    // Wait for the first refresh to land in the store.
    let mut token = String::new();
    for _ in 0..100 {
        let (status, body) = request(
            &addr,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        );
        assert_eq!(status, 200);
        token = body;
        let (status, _) = request(
            &addr,
            "GET",
            "/latest/meta-data/iam/security-credentials/ExampleRole",
            &[("X-aws-ec2-metadata-token", &token)],
        );
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "no credentials yet must be 503");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, role) = request(
        &addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        &[("X-aws-ec2-metadata-token", &token)],
    );
    assert_eq!((status, role.trim()), (200, "ExampleRole"));
    let (status, body) = request(
        &addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/ExampleRole",
        &[("X-aws-ec2-metadata-token", &token)],
    );
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let issued = server.issued().pop().unwrap();
    assert_eq!(json["Code"], "Success");
    assert_eq!(json["AccessKeyId"], issued.access_key_id.as_str());
    assert_eq!(json["SecretAccessKey"], issued.secret_access_key.as_str());
    assert_eq!(json["Token"], issued.session_token.as_str());

    let (status, _) = request(
        &addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        &[
            ("X-aws-ec2-metadata-token", &token),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    );
    assert_eq!(status, 403);

    let ecs_token = std::fs::read_to_string(&token_file).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().mode() & 0o777,
        0o600
    );
    let (status, body) = request(
        &addr,
        "GET",
        "/credentials",
        &[("Authorization", ecs_token.trim())],
    );
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["AccessKeyId"], issued.access_key_id.as_str());
    let (status, _) = request(&addr, "GET", "/credentials", &[("Authorization", "wrong")]);
    assert_eq!(status, 403);

    let killed = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(server.request_count(), 1);
}
