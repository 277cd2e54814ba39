//! End to end with keys in a real swtpm: `ra-agent` against the verifying endpoint through
//! the TPM's TCP and Unix-socket transports, the TPM failures with their messages and
//! exit statuses, and the key password kept out of the logs.
#![cfg(feature = "tpm")]
#![allow(clippy::unwrap_used)]

mod common;
mod tpm_harness;

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use common::*;
use tpm_harness::*;

/// The key password and how the agent gets it.
#[derive(Debug, Clone, Copy)]
enum KeyPassword {
    /// The key has none and the agent is given none.
    Absent,
    /// The key has none, and `--no-tpm-key-password` overrides a stray
    /// RA_AGENT_TPM_KEY_PASSWORD.
    DisabledByFlag,
    /// `--tpm-key-password-file`.
    File(&'static str),
    /// RA_AGENT_TPM_KEY_PASSWORD.
    Environment(&'static str),
}

impl KeyPassword {
    fn value(self) -> Option<&'static str> {
        match self {
            KeyPassword::File(password) | KeyPassword::Environment(password) => Some(password),
            KeyPassword::Absent | KeyPassword::DisabledByFlag => None,
        }
    }
}

/// The agent command a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agent {
    CredentialProcess,
    UpdateOnce,
}

/// How the agent learns the TPM address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Device {
    /// `--tpm-device` with `swtpm:host=127.0.0.1,port=P` or `unix:PATH`.
    Flag,
    /// TPM_DEVICE with the TCTI string, `swtpm:host=...` or `swtpm:path=PATH`.
    Environment,
}

/// One run of the agent with one TPM key.
struct Case {
    name: &'static str,
    key: Key,
    ca: Ca,
    password: KeyPassword,
    agent: Agent,
    device: Device,
    /// Whether the intermediate follows the leaf in the certificate file instead of
    /// coming from `--intermediates`.
    chain_in_certificate: bool,
}

fn without_device_flag(list: &mut Vec<String>) {
    let i = list.iter().position(|a| a == "--tpm-device").unwrap();
    list.drain(i..i + 2);
}

/// Creates the fixtures of `cases` in one swtpm, optionally sets the owner hierarchy
/// password afterwards, and runs the agent once per case against one endpoint.
fn check_cases(listen: Listen, cases: &[Case], owner_password: Option<&str>) {
    let swtpm = Swtpm::start(listen);
    let server = start_server();
    swtpm.persistent_parent(PARENT, None);
    swtpm.persistent_parent(PARENT_WITH_PASSWORD, Some(PARENT_PASSWORD));
    let fixtures: Vec<Fixture> = cases
        .iter()
        .map(|case| {
            create_fixture_with_chain(
                &swtpm,
                case.name,
                case.key,
                case.password.value(),
                case.ca,
                case.chain_in_certificate,
            )
        })
        .collect();
    // The storage primary key derives from the owner seed, not from the owner password,
    // so a password set after the key files were made still lets them load.
    let hierarchy_password_file = owner_password.map(|password| {
        swtpm.run("tpm2_changeauth", &["-c", "o", &format!("str:{password}")]);
        password_file(&swtpm, "owner", password)
    });
    swtpm.assert_no_transients("after creating the fixtures");
    let lockout_before = swtpm.lockout_counter();

    for (case, fixture) in cases.iter().zip(&fixtures) {
        let name = case.name;
        let dir = TempDir::new(&format!("tpm-{name}"));
        let file = dir.path("aws/credentials");
        let mut list = match case.agent {
            Agent::CredentialProcess => args(&["credential-process"]),
            Agent::UpdateOnce => args(&["update", "--once", "--profile", name]),
        };
        list.extend(tpm_args(
            &swtpm,
            fixture,
            case.ca,
            case.chain_in_certificate,
        ));
        list.extend(identity_args(&server, case.ca.anchor()));

        let tcti = swtpm.tcti();
        let mut env: Vec<(&str, &str)> = Vec::new();
        if case.device == Device::Environment {
            without_device_flag(&mut list);
            env.push(("TPM_DEVICE", &tcti));
        }
        match case.password {
            KeyPassword::Absent => {}
            KeyPassword::DisabledByFlag => {
                list.push("--no-tpm-key-password".into());
                env.push(("RA_AGENT_TPM_KEY_PASSWORD", "stray password"));
            }
            KeyPassword::File(password) => {
                let path = password_file(&swtpm, name, password);
                list.extend(args(&["--tpm-key-password-file", &path]));
            }
            KeyPassword::Environment(password) => {
                env.push(("RA_AGENT_TPM_KEY_PASSWORD", password));
            }
        }
        if let Key::File { parent, .. } = case.key {
            if parent == Parent::PersistentWithPassword {
                let path = password_file(&swtpm, "parent", PARENT_PASSWORD);
                list.extend(args(&["--tpm-parent-password-file", &path]));
            }
            if let (Parent::Owner, Some(path)) = (parent, &hierarchy_password_file) {
                list.extend(args(&["--tpm-hierarchy-password-file", path]));
            }
        }

        let issued_before = server.issued().len();
        let output = run_agent(&list, &file, &env, b"");
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        assert_eq!(server.issued().len(), issued_before + 1, "{name}");
        match case.agent {
            Agent::CredentialProcess => {
                assert_process_json(&output, &server);
                assert!(!file.exists(), "{name}: credential-process wrote a file");
            }
            Agent::UpdateOnce => assert_profile_written(&file, name, &server),
        }
        swtpm.assert_no_transients(name);
    }
    assert_eq!(
        swtpm.lockout_counter(),
        lockout_before,
        "an authorization failed during the runs"
    );
}

#[test]
fn tpm_keys_get_credentials_over_tcp() {
    let cases = [
        Case {
            name: "rsa-persistent",
            key: Key::Persistent {
                algorithm: "rsa2048",
                handle: 0x8100_0101,
            },
            ca: Ca::Rsa,
            password: KeyPassword::Absent,
            agent: Agent::CredentialProcess,
            device: Device::Flag,
            chain_in_certificate: false,
        },
        Case {
            name: "p256-persistent-password",
            key: Key::Persistent {
                algorithm: "ecc256",
                handle: 0x8100_0102,
            },
            ca: Ca::Ec,
            password: KeyPassword::File("p256 key pw"),
            agent: Agent::UpdateOnce,
            device: Device::Environment,
            chain_in_certificate: false,
        },
        Case {
            name: "p384-file-owner-password",
            key: Key::File {
                algorithm: "EC",
                option: "group:P-384",
                parent: Parent::Owner,
            },
            ca: Ca::Ec,
            password: KeyPassword::Environment("p384-file-pw"),
            agent: Agent::CredentialProcess,
            device: Device::Flag,
            chain_in_certificate: true,
        },
        Case {
            name: "rsa-file-parent",
            key: Key::File {
                algorithm: "RSA",
                option: "bits:2048",
                parent: Parent::Persistent,
            },
            ca: Ca::Rsa,
            password: KeyPassword::DisabledByFlag,
            agent: Agent::UpdateOnce,
            device: Device::Flag,
            chain_in_certificate: false,
        },
    ];
    check_cases(Listen::Tcp, &cases, None);
}

#[test]
fn tpm_keys_get_credentials_over_unix_socket() {
    let cases = [
        Case {
            name: "p384-persistent-password",
            key: Key::Persistent {
                algorithm: "ecc384",
                handle: 0x8100_0103,
            },
            ca: Ca::Ec,
            password: KeyPassword::Environment("p384 persistent pw"),
            agent: Agent::UpdateOnce,
            device: Device::Flag,
            chain_in_certificate: true,
        },
        Case {
            name: "p256-file-owner",
            key: Key::File {
                algorithm: "EC",
                option: "group:P-256",
                parent: Parent::Owner,
            },
            ca: Ca::Ec,
            password: KeyPassword::Absent,
            agent: Agent::CredentialProcess,
            device: Device::Environment,
            chain_in_certificate: false,
        },
        Case {
            name: "rsa-file-parent-password",
            key: Key::File {
                algorithm: "RSA",
                option: "bits:2048",
                parent: Parent::PersistentWithPassword,
            },
            ca: Ca::Rsa,
            password: KeyPassword::File("rsa-file-pw"),
            agent: Agent::CredentialProcess,
            device: Device::Flag,
            chain_in_certificate: false,
        },
        Case {
            name: "p256-persistent",
            key: Key::Persistent {
                algorithm: "ecc256",
                handle: 0x8100_0104,
            },
            ca: Ca::Ec,
            password: KeyPassword::DisabledByFlag,
            agent: Agent::UpdateOnce,
            device: Device::Environment,
            chain_in_certificate: false,
        },
    ];
    check_cases(Listen::Unix, &cases, Some("owner pw"));
}

/// One failing run: what to change in the arguments and environment, and fragments the
/// error message must contain.
struct Failure<'a> {
    name: &'a str,
    fixture: &'a Fixture,
    key_spec: Option<String>,
    device: Option<String>,
    password_file: Option<String>,
    password_env: Option<&'a str>,
    message: Vec<String>,
}

#[test]
fn tpm_failures_exit_5_and_keep_file() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let server = start_server();
    let handle = Key::Persistent {
        algorithm: "ecc256",
        handle: 0x8100_0101,
    };
    let persistent = create_fixture(&swtpm, "persistent", handle, Some("right-key-pw"), Ca::Ec);
    let file_key = Key::File {
        algorithm: "EC",
        option: "group:P-384",
        parent: Parent::Owner,
    };
    let key_file = create_fixture(&swtpm, "key-file", file_key, Some("right-file-pw"), Ca::Ec);
    let dir = TempDir::new("tpm-failures");
    let file = dir.path("credentials");
    let original = b"[default]\naws_access_key_id = OLD\n\n[other]\nregion = eu-west-1\n";
    std::fs::write(&file, original).unwrap();
    let wrong_password = password_file(&swtpm, "wrong", "wrong-key-pw");
    let right_password = password_file(&swtpm, "right", "right-key-pw");
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let missing_socket = dir.path("missing.sock").display().to_string();
    let missing_device = dir.path("tpmrm9").display().to_string();

    // Each wrong password counts towards dictionary-attack lockout, and swtpm 0.7.1 starts
    // with TPM_PT_MAX_AUTH_FAIL = 3, so the table has only two.
    let failures = [
        Failure {
            name: "wrong password for persistent key",
            fixture: &persistent,
            key_spec: None,
            device: None,
            password_file: Some(wrong_password.clone()),
            password_env: None,
            message: vec!["authorization failed".into(), "TPM_RC_AUTH_FAIL".into()],
        },
        Failure {
            name: "wrong password for key file",
            fixture: &key_file,
            key_spec: None,
            device: None,
            password_file: None,
            password_env: Some("wrong-file-pw"),
            message: vec!["authorization failed".into(), "TPM_RC_AUTH_FAIL".into()],
        },
        Failure {
            name: "no password for key file with one",
            fixture: &key_file,
            key_spec: None,
            device: None,
            password_file: None,
            password_env: None,
            message: vec!["no key password was given".into()],
        },
        Failure {
            name: "missing handle",
            fixture: &persistent,
            key_spec: Some("handle:0x81000999".into()),
            device: None,
            password_file: None,
            password_env: None,
            message: vec!["0x81000999".into(), "does not exist".into()],
        },
        Failure {
            name: "missing Unix socket",
            fixture: &persistent,
            key_spec: None,
            device: Some(format!("unix:{missing_socket}")),
            password_file: Some(right_password.clone()),
            password_env: None,
            message: vec![format!("unix:{missing_socket}")],
        },
        Failure {
            name: "closed TCP port",
            fixture: &persistent,
            key_spec: None,
            device: Some(format!("swtpm:host=127.0.0.1,port={closed_port}")),
            password_file: Some(right_password.clone()),
            password_env: None,
            message: vec![format!("swtpm:host=127.0.0.1,port={closed_port}")],
        },
        Failure {
            name: "missing device",
            fixture: &persistent,
            key_spec: None,
            device: Some(missing_device.clone()),
            password_file: Some(right_password.clone()),
            password_env: None,
            message: vec![missing_device.clone(), "not found".into()],
        },
    ];
    let lockout_before = swtpm.lockout_counter();
    for failure in &failures {
        let name = failure.name;
        let mut list = args(&["update", "--once"]);
        list.extend(tpm_args(&swtpm, failure.fixture, Ca::Ec, false));
        list.extend(identity_args(&server, EC_TRUST_ANCHOR_ARN));
        if let Some(spec) = &failure.key_spec {
            let i = list.iter().position(|a| a == "--private-key").unwrap();
            list[i + 1] = spec.clone();
        }
        if let Some(device) = &failure.device {
            let i = list.iter().position(|a| a == "--tpm-device").unwrap();
            list[i + 1] = device.clone();
        }
        if let Some(path) = &failure.password_file {
            list.extend(args(&["--tpm-key-password-file", path]));
        }
        let mut env = Vec::new();
        if let Some(password) = failure.password_env {
            env.push(("RA_AGENT_TPM_KEY_PASSWORD", password));
        }

        let output = run_agent(&list, &file, &env, b"");
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(5), "{name}: {err}");
        for fragment in &failure.message {
            assert!(
                err.contains(fragment),
                "{name}: message lacks {fragment:?}: {err}"
            );
        }
        assert_eq!(
            std::fs::read(&file).unwrap(),
            original,
            "{name}: file changed"
        );
        swtpm.assert_no_transients(name);
    }
    assert_eq!(
        server.issued().len(),
        0,
        "a failed run reached the endpoint"
    );
    assert_eq!(
        swtpm.lockout_counter(),
        lockout_before + 2,
        "each wrong password must be tried exactly once"
    );

    // The TPM is not in lockout: the right passwords still work.
    let mut list = args(&[
        "update",
        "--once",
        "--tpm-key-password-file",
        &right_password,
    ]);
    list.extend(tpm_args(&swtpm, &persistent, Ca::Ec, false));
    list.extend(identity_args(&server, EC_TRUST_ANCHOR_ARN));
    let output = run_agent(&list, &file, &[], b"");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_profile_written(&file, "default", &server);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("[other]\nregion = eu-west-1\n"), "{text}");
    swtpm.assert_no_transients("right password");
}

#[test]
fn tpm_debug_logs_never_contain_password() {
    let swtpm = Swtpm::start(Listen::Unix);
    let server = start_server();
    let password = "Quartz-7319-tpm-secret";
    let wrong = "Basalt-2846-tpm-secret";
    let key = Key::File {
        algorithm: "EC",
        option: "group:P-256",
        parent: Parent::Owner,
    };
    let fixture = create_fixture(&swtpm, "secret", key, Some(password), Ca::Ec);
    let mut list = args(&["credential-process", "--debug"]);
    list.extend(tpm_args(&swtpm, &fixture, Ca::Ec, false));
    list.extend(identity_args(&server, EC_TRUST_ANCHOR_ARN));
    let unused = swtpm.path("unused");

    let output = run_agent(
        &list,
        &unused,
        &[("RA_AGENT_TPM_KEY_PASSWORD", password)],
        b"",
    );
    assert_process_json(&output, &server);
    let err = stderr(&output);
    assert!(err.contains("DEBUG"), "debug logging was not on: {err}");
    assert!(!err.contains(password), "key password in logs: {err}");
    let issued = server.issued().pop().unwrap();
    assert!(
        !err.contains(&issued.secret_access_key),
        "secret key in logs"
    );
    assert!(
        !err.contains(&issued.session_token),
        "session token in logs"
    );
    swtpm.assert_no_transients("right password");

    let output = run_agent(&list, &unused, &[("RA_AGENT_TPM_KEY_PASSWORD", wrong)], b"");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(5), "{err}");
    assert!(err.contains("authorization failed"), "{err}");
    assert!(!err.contains(wrong), "wrong key password in logs: {err}");
    assert!(!err.contains(password), "key password in logs: {err}");
    swtpm.assert_no_transients("wrong password");
}

/// Decodes lowercase hex from `sign-string --format text`.
fn decode_hex(text: &str) -> Vec<u8> {
    let text = text.trim();
    assert_eq!(text.len() % 2, 0, "odd hex length: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn run_ok(list: &[String], stdin: &[u8], env: &[(&str, &str)], context: &str) -> Output {
    let output = run_agent(list, Path::new("/nonexistent/credentials"), env, stdin);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{context}: {}",
        stderr(&output)
    );
    output
}

#[test]
fn tpm_sign_string_and_read_certificate_data() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let rsa_key = Key::File {
        algorithm: "RSA",
        option: "bits:2048",
        parent: Parent::Owner,
    };
    let p384_key = Key::Persistent {
        algorithm: "ecc384",
        handle: 0x8100_0105,
    };
    let cases = [
        (
            "rsa-file",
            create_fixture(&swtpm, "rsa-file", rsa_key, None, Ca::Rsa),
            Ca::Rsa,
            None,
            "RSA 2048",
            "AWS4-X509-RSA-SHA256",
        ),
        (
            "p384-persistent",
            create_fixture(&swtpm, "p384-persistent", p384_key, Some("sign pw"), Ca::Ec),
            Ca::Ec,
            Some("sign pw"),
            "EC P-384",
            "AWS4-X509-ECDSA-SHA256",
        ),
    ];
    let message = b"CreateSession string to sign\n";

    for (name, fixture, ca, password, key_type, algorithm) in &cases {
        let env: Vec<(&str, &str)> = password
            .map(|p| vec![("RA_AGENT_TPM_KEY_PASSWORD", p)])
            .unwrap_or_default();
        let leaf = ra_signer::read_certificates(&fixture.certificate).unwrap()[0].clone();
        let intermediate = ra_signer::read_certificates(&ca.chain()).unwrap()[0].clone();

        let mut list = args(&["read-certificate-data"]);
        list.extend(tpm_args(&swtpm, fixture, *ca, false));
        let output = run_ok(&list, b"", &env, name);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["subject"], leaf.subject(), "{name}");
        assert!(
            leaf.subject().contains(&format!("ra-agent tpm {name}")),
            "{name}: {}",
            leaf.subject()
        );
        assert_eq!(json["issuer"], intermediate.subject(), "{name}");
        assert_eq!(json["serialNumber"], leaf.serial_decimal(), "{name}");
        assert_eq!(json["keyType"], *key_type, "{name}");
        assert_eq!(json["algorithm"], *algorithm, "{name}");
        assert_eq!(
            json["chain"],
            serde_json::json!([intermediate.subject()]),
            "{name}"
        );
        swtpm.assert_no_transients(name);

        let mut list = args(&["sign-string"]);
        list.extend(tpm_args(&swtpm, fixture, *ca, false));
        let output = run_ok(&list, message, &env, name);
        let signature = decode_hex(&String::from_utf8(output.stdout).unwrap());
        assert!(
            ra_signer::verify_signature(&leaf, message, &signature),
            "{name}: text signature does not verify"
        );
        assert!(
            !ra_signer::verify_signature(&leaf, b"another message", &signature),
            "{name}: signature verifies for another message"
        );
        swtpm.assert_no_transients(name);

        list.extend(args(&["--format", "json"]));
        let output = run_ok(&list, message, &env, name);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["algorithm"], *algorithm, "{name}");
        let signature = base64::engine::general_purpose::STANDARD
            .decode(json["signature"].as_str().unwrap())
            .unwrap();
        assert!(
            ra_signer::verify_signature(&leaf, message, &signature),
            "{name}: JSON signature does not verify"
        );
        swtpm.assert_no_transients(name);
    }
}
