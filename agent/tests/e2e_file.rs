//! End to end with file keys: the `ra-agent` binary against the verifying endpoint over
//! TLS on loopback, and the bad-input cases with their messages and exit statuses.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn file_key_args(server: &Server, cert: &str, key: &str, anchor: &str) -> Vec<String> {
    let mut list = args(&[
        "--certificate",
        pki(cert).to_str().unwrap(),
        "--private-key",
        pki(key).to_str().unwrap(),
    ]);
    list.extend(identity_args(server, anchor));
    list
}

fn with_command(command: &str, rest: Vec<String>) -> Vec<String> {
    let mut list = vec![command.to_owned()];
    list.extend(rest);
    list
}

#[test]
fn credential_process_rsa_with_chain() {
    let server = start_server();
    let dir = TempDir::new("cp-rsa");
    let mut list = file_key_args(
        &server,
        "rsa/leaf.pem",
        "rsa/leaf.key",
        RSA_TRUST_ANCHOR_ARN,
    );
    list.extend(args(&[
        "--intermediates",
        pki("rsa/chain.pem").to_str().unwrap(),
    ]));
    let output = run(
        &with_command("credential-process", list),
        &dir.path("c"),
        &[],
    );
    assert_process_json(&output, &server);
    assert!(
        !dir.path("c").exists(),
        "credential-process must not write files"
    );
}

#[test]
fn credential_process_ec_full_chain_file() {
    let server = start_server();
    let dir = TempDir::new("cp-ec");
    let list = file_key_args(
        &server,
        "ec/leaf-fullchain.pem",
        "ec/leaf.sec1.key",
        EC_TRUST_ANCHOR_ARN,
    );
    let output = run(
        &with_command("credential-process", list),
        &dir.path("c"),
        &[],
    );
    assert_process_json(&output, &server);
}

#[test]
fn update_once_merges_and_keeps_other_bytes() {
    let server = start_server();
    let dir = TempDir::new("update");
    let file = dir.path("aws/credentials");
    std::fs::create_dir_all(dir.path("aws")).unwrap();
    let before = "# managed by hand\r\n[other]\r\naws_access_key_id = KEEP\r\n\r\n[device]\r\nregion = us-east-1\r\naws_security_token = STALE\r\n";
    std::fs::write(&file, before).unwrap();
    let mut list = file_key_args(
        &server,
        "rsa/leaf-fullchain.pem",
        "rsa/leaf.pkcs1.key",
        RSA_TRUST_ANCHOR_ARN,
    );
    list.extend(args(&[
        "--profile",
        "device",
        "--once",
        "--json-file",
        dir.path("creds.json").to_str().unwrap(),
    ]));
    let output = run(&with_command("update", list), &file, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let text = std::fs::read_to_string(&file).unwrap();
    let issued = server.issued().pop().unwrap();
    let expected = format!(
        "# managed by hand\r\n[other]\r\naws_access_key_id = KEEP\r\n\r\n[device]\r\nregion = us-east-1\r\naws_access_key_id = {}\r\naws_secret_access_key = {}\r\naws_session_token = {}\r\n",
        issued.access_key_id, issued.secret_access_key, issued.session_token
    );
    assert_eq!(text, expected);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("creds.json")).unwrap()).unwrap();
    assert_eq!(json["AccessKeyId"], issued.access_key_id.as_str());
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(dir.path("creds.json")).unwrap().mode() & 0o777,
        0o600
    );
}

#[test]
fn update_once_creates_file_and_directory() {
    let server = start_server();
    let dir = TempDir::new("update-new");
    let file = dir.path("new/credentials");
    let mut list = file_key_args(&server, "ec/leaf.pem", "ec/leaf.key", EC_TRUST_ANCHOR_ARN);
    list.extend(args(&[
        "--intermediates",
        pki("ec/chain.pem").to_str().unwrap(),
        "--once",
    ]));
    let output = run(&with_command("update", list), &file, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_profile_written(&file, "default", &server);
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(dir.path("new")).unwrap().mode() & 0o777,
        0o700
    );
}

/// One bad-input case: the arguments to change, the exit status and a message fragment.
struct Case {
    name: &'static str,
    edit: fn(&mut Vec<String>, &Server),
    status: i32,
    message: &'static str,
}

fn set(list: &mut [String], flag: &str, value: &str) {
    let i = list.iter().position(|a| a == flag).unwrap();
    list[i + 1] = value.to_owned();
}

#[test]
fn bad_input_exit_status_and_file() {
    let cases = [
        Case {
            name: "invalid role ARN",
            edit: |l, _| set(l, "--role-arn", "arn:aws:iam::123:role"),
            status: 2,
            message: "--role-arn",
        },
        Case {
            name: "region mismatch",
            edit: |l, _| {
                set(
                    l,
                    "--profile-arn",
                    &PROFILE_ARN.replace("us-east-1", "eu-west-1"),
                )
            },
            status: 2,
            message: "region mismatch",
        },
        Case {
            name: "duration too short",
            edit: |l, _| l.extend(args(&["--session-duration", "899"])),
            status: 2,
            message: "900 and 43200",
        },
        Case {
            name: "key mismatch",
            edit: |l, _| {
                set(
                    l,
                    "--private-key",
                    pki("rsa/leaf-direct.key").to_str().unwrap(),
                )
            },
            status: 2,
            message: "does not match",
        },
        Case {
            name: "expired certificate",
            edit: |l, _| {
                set(
                    l,
                    "--certificate",
                    pki("rsa/leaf-expired.pem").to_str().unwrap(),
                );
                set(
                    l,
                    "--private-key",
                    pki("rsa/leaf-expired.key").to_str().unwrap(),
                );
            },
            status: 2,
            message: "expired",
        },
        Case {
            name: "malformed certificate",
            edit: |l, _| set(l, "--certificate", pki("rsa/leaf.key").to_str().unwrap()),
            status: 2,
            message: "no CERTIFICATE",
        },
        Case {
            name: "missing certificate file",
            edit: |l, _| set(l, "--certificate", "/nonexistent/cert.pem"),
            status: 2,
            message: "/nonexistent/cert.pem",
        },
        Case {
            name: "untrusted chain",
            edit: |l, _| {
                set(l, "--certificate", pki("rogue/leaf.pem").to_str().unwrap());
                set(l, "--private-key", pki("rogue/leaf.key").to_str().unwrap());
            },
            status: 3,
            message: "Untrusted signing certificate",
        },
        Case {
            name: "unreachable endpoint",
            edit: |l, _| set(l, "--endpoint", "https://127.0.0.1:1"),
            status: 4,
            message: "cannot reach https://127.0.0.1:1",
        },
        Case {
            name: "bad endpoint URL",
            edit: |l, _| set(l, "--endpoint", "rolesanywhere.example"),
            status: 2,
            message: "--endpoint",
        },
        Case {
            name: "missing role",
            edit: |l, _| {
                let i = l.iter().position(|a| a == "--role-arn").unwrap();
                l.drain(i..i + 2);
            },
            status: 2,
            message: "missing --role-arn",
        },
        Case {
            name: "untrusted TLS server",
            edit: |l, _| set(l, "--ca-bundle", pki("ec/root.pem").to_str().unwrap()),
            status: 2,
            message: "add its CA with --ca-bundle",
        },
    ];
    let server = start_server();
    let dir = TempDir::new("bad-input");
    let file = dir.path("credentials");
    let original = "[default]\naws_access_key_id = OLD\naws_secret_access_key = OLDSECRET\naws_session_token = OLDTOKEN\n";
    std::fs::write(&file, original).unwrap();
    for case in cases {
        let mut list = file_key_args(
            &server,
            "rsa/leaf-fullchain.pem",
            "rsa/leaf.key",
            RSA_TRUST_ANCHOR_ARN,
        );
        (case.edit)(&mut list, &server);
        list.push("--once".into());
        let output = run(&with_command("update", list), &file, &[]);
        let err = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(case.status),
            "{}: {err}",
            case.name
        );
        assert!(
            err.contains(case.message),
            "{}: message lacks {:?}: {err}",
            case.name,
            case.message
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            original,
            "{}: file changed",
            case.name
        );
    }
}

#[test]
fn unwritable_directory_exits_6_and_names_path() {
    let server = start_server();
    let dir = TempDir::new("unwritable");
    // A regular file where a directory should be: fails for root too.
    std::fs::write(dir.path("blocker"), "").unwrap();
    let file = dir.path("blocker/credentials");
    let mut list = file_key_args(
        &server,
        "rsa/leaf-fullchain.pem",
        "rsa/leaf.key",
        RSA_TRUST_ANCHOR_ARN,
    );
    list.push("--once".into());
    let output = run(&with_command("update", list), &file, &[]);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("blocker/credentials"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn service_rejection_message_is_shown_verbatim() {
    let server = start_server();
    server.push_script(mock_rolesanywhere::Scripted::Status {
        status: 404,
        error_type: "ResourceNotFoundException".into(),
        message: "Profile not found: example".into(),
    });
    let dir = TempDir::new("reject");
    let list = file_key_args(
        &server,
        "rsa/leaf-fullchain.pem",
        "rsa/leaf.key",
        RSA_TRUST_ANCHOR_ARN,
    );
    let output = run(
        &with_command("credential-process", list),
        &dir.path("c"),
        &[],
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("HTTP 404 ResourceNotFoundException: Profile not found: example"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn transient_failures_are_retried_and_resigned() {
    let server = start_server();
    for _ in 0..2 {
        server.push_script(mock_rolesanywhere::Scripted::Status {
            status: 503,
            error_type: "ServiceUnavailableException".into(),
            message: "busy".into(),
        });
    }
    let dir = TempDir::new("retry");
    let list = file_key_args(
        &server,
        "rsa/leaf-fullchain.pem",
        "rsa/leaf.key",
        RSA_TRUST_ANCHOR_ARN,
    );
    let output = run(
        &with_command("credential-process", list),
        &dir.path("c"),
        &[],
    );
    assert_process_json(&output, &server);
    assert_eq!(server.request_count(), 3);
}

#[test]
fn debug_logs_never_contain_secrets() {
    let server = start_server();
    let dir = TempDir::new("secrets");
    let mut list = file_key_args(
        &server,
        "rsa/leaf-fullchain.pem",
        "rsa/leaf.key",
        RSA_TRUST_ANCHOR_ARN,
    );
    list.extend(args(&[
        "--debug",
        "--once",
        "--json-file",
        dir.path("c.json").to_str().unwrap(),
    ]));
    let output = run(&with_command("update", list), &dir.path("c"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("DEBUG"), "debug logging was not on: {err}");
    let issued = server.issued().pop().unwrap();
    assert!(
        !err.contains(&issued.secret_access_key),
        "secret access key in logs"
    );
    assert!(
        !err.contains(&issued.session_token),
        "session token in logs"
    );
    assert!(!err.contains("Signature="), "signature in logs");
}

#[test]
fn sign_string_and_certificate_data() {
    let dir = TempDir::new("sign");
    let cert = pki("rsa/leaf.pem");
    let list = args(&[
        "read-certificate-data",
        "--certificate",
        cert.to_str().unwrap(),
        "--private-key",
        pki("rsa/leaf.key").to_str().unwrap(),
    ]);
    let output = run(&list, &dir.path("c"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["serialNumber"], "233322351226215633162849775");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ra-agent"))
        .args([
            "sign-string",
            "--certificate",
            cert.to_str().unwrap(),
            "--private-key",
            pki("rsa/leaf.key").to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"hello").unwrap();
    let output = child.wait_with_output().unwrap();
    let hex = String::from_utf8(output.stdout).unwrap();
    let signature: Vec<u8> = (0..hex.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let leaf = &ra_signer::read_certificates(&cert).unwrap()[0];
    assert!(ra_signer::verify_signature(leaf, b"hello", &signature));
}

/// Starts a minimal HTTP CONNECT proxy on loopback that counts the tunnels it opens.
fn start_connect_proxy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&tunnels);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let counter = std::sync::Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let target = request_line.split(' ').nth(1).unwrap().to_owned();
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header == "\r\n" || header.is_empty() {
                        break;
                    }
                }
                let upstream = TcpStream::connect(&target).unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut client_write = client.try_clone().unwrap();
                client_write
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let mut upstream_read = upstream.try_clone().unwrap();
                let mut upstream_write = upstream;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut upstream_read, &mut client_write);
                });
                let _ = std::io::copy(&mut reader, &mut upstream_write);
            });
        }
    });
    (port, tunnels)
}

#[test]
fn https_proxy_and_no_proxy_are_honoured() {
    use std::sync::atomic::Ordering;

    let server = start_server();
    let (proxy_port, tunnels) = start_connect_proxy();
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let dir = TempDir::new("proxy");
    let list = with_command(
        "credential-process",
        file_key_args(
            &server,
            "rsa/leaf-fullchain.pem",
            "rsa/leaf.key",
            RSA_TRUST_ANCHOR_ARN,
        ),
    );

    let output = run(&list, &dir.path("c"), &[("HTTPS_PROXY", proxy.as_str())]);
    assert_process_json(&output, &server);
    assert_eq!(
        tunnels.load(Ordering::SeqCst),
        1,
        "the request did not use the proxy"
    );

    let output = run(
        &list,
        &dir.path("c"),
        &[("HTTPS_PROXY", proxy.as_str()), ("NO_PROXY", "127.0.0.1")],
    );
    assert_process_json(&output, &server);
    assert_eq!(tunnels.load(Ordering::SeqCst), 1, "NO_PROXY was ignored");
}

#[test]
fn read_certificate_data_needs_no_key() {
    let dir = TempDir::new("read-cert");
    let cert = pki("ec/leaf-fullchain.pem");
    let output = run(
        &args(&[
            "read-certificate-data",
            "--certificate",
            cert.to_str().unwrap(),
        ]),
        &dir.path("c"),
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["serialNumber"], "2119674654");
    assert_eq!(json["keyType"], "EC P-256");
    assert_eq!(json["algorithm"], "AWS4-X509-ECDSA-SHA256");
    assert_eq!(json["chain"].as_array().unwrap().len(), 1);
}

#[test]
fn region_override_must_match_profile() {
    let server = start_server();
    let dir = TempDir::new("region");
    let mut list = file_key_args(
        &server,
        "rsa/leaf-fullchain.pem",
        "rsa/leaf.key",
        RSA_TRUST_ANCHOR_ARN,
    );
    list.extend(args(&["--region", "eu-west-1"]));
    let output = run(
        &with_command("credential-process", list),
        &dir.path("c"),
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--region eu-west-1"),
        "{}",
        stderr(&output)
    );
    assert_eq!(server.request_count(), 0);
}
