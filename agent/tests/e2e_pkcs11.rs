//! End to end with keys in a real SoftHSM2 token: `ra-agent` against the verifying
//! endpoint, and the token failures with their messages and exit statuses.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A fresh token made by tests/softhsm/setup-token.sh, with the user PIN in a 0600 file.
struct Token {
    dir: TempDir,
}

impl Token {
    fn new(tag: &str) -> Token {
        let dir = TempDir::new(tag);
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/softhsm/setup-token.sh");
        let output = Command::new(script)
            .arg(dir.path("token"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "setup-token.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(dir.path("pin"), "1234\n").unwrap();
        Token { dir }
    }

    fn conf(&self) -> String {
        self.dir.path("token/softhsm2.conf").display().to_string()
    }

    fn pin_file(&self) -> String {
        self.dir.path("pin").display().to_string()
    }

    fn run(&self, list: &[String], credentials: &std::path::Path) -> std::process::Output {
        let conf = self.conf();
        run(list, credentials, &[("SOFTHSM2_CONF", conf.as_str())])
    }
}

fn token_args(
    token: &Token,
    server: &Server,
    command: &str,
    certificate: &str,
    anchor: &str,
) -> Vec<String> {
    let mut list = args(&[
        command,
        "--certificate",
        &format!("{certificate}?pin-source={}", token.pin_file()),
        "--pkcs11-lib",
        MODULE,
    ]);
    list.extend(identity_args(server, anchor));
    list
}

#[test]
fn pkcs11_keys_get_credentials() {
    let token = Token::new("p11-keys");
    let server = start_server();
    let ec384_chain = token
        .dir
        .path("token/ec384-chain.pem")
        .display()
        .to_string();
    let ec_chain = pki("ec/chain.pem").display().to_string();
    let rsa_chain = pki("rsa/chain.pem").display().to_string();
    let cases: [(&str, &str, Vec<&str>); 4] = [
        // Labels of key and certificate differ: the key is found by CKA_ID, the chain
        // from the intermediate stored on the token.
        (
            "pkcs11:token=ra-test;object=rsa-cert;type=cert",
            RSA_TRUST_ANCHOR_ARN,
            vec![],
        ),
        (
            "pkcs11:token=ra-test;object=ec256;type=cert",
            EC_TRUST_ANCHOR_ARN,
            vec!["--intermediates", &ec_chain],
        ),
        (
            "pkcs11:token=ra-test;object=ec384;type=cert",
            EC_TRUST_ANCHOR_ARN,
            vec!["--intermediates", &ec384_chain],
        ),
        (
            "pkcs11:token=ra-test;id=%04;type=cert",
            RSA_TRUST_ANCHOR_ARN,
            vec!["--reuse-pin", "--intermediates", &rsa_chain],
        ),
    ];
    for (uri, anchor, extra) in cases {
        let mut list = token_args(&token, &server, "credential-process", uri, anchor);
        list.extend(args(&extra));
        let output = token.run(&list, &token.dir.path("unused"));
        assert_eq!(output.status.code(), Some(0), "{uri}: {}", stderr(&output));
        assert_process_json(&output, &server);
    }
}

#[test]
fn pkcs11_update_once_writes_profile() {
    let token = Token::new("p11-update");
    let server = start_server();
    let file = token.dir.path("aws/credentials");
    let mut list = token_args(
        &token,
        &server,
        "update",
        "pkcs11:token=ra-test;object=rsa-cert;type=cert",
        RSA_TRUST_ANCHOR_ARN,
    );
    list.extend(args(&[
        "--private-key",
        &format!(
            "pkcs11:token=ra-test;id=%01;type=private?pin-source={}",
            token.pin_file()
        ),
        "--once",
        "--profile",
        "pos",
    ]));
    let output = token.run(&list, &file);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_profile_written(&file, "pos", &server);
}

#[test]
fn pkcs11_failures_exit_by_class_and_keep_file() {
    let token = Token::new("p11-bad");
    let server = start_server();
    let file = token.dir.path("credentials");
    let original = "[default]\naws_access_key_id = OLD\n";
    std::fs::write(&file, original).unwrap();
    std::fs::write(token.dir.path("wrong-pin"), "9999\n").unwrap();
    let wrong_pin = token.dir.path("wrong-pin").display().to_string();

    let cases: Vec<(&str, Vec<String>, i32, &str)> = vec![
        (
            "wrong PIN",
            token_args(
                &token,
                &server,
                "update",
                "pkcs11:token=ra-test;object=rsa-cert;type=cert",
                RSA_TRUST_ANCHOR_ARN,
            )
            .into_iter()
            .map(|a| a.replace(&token.pin_file(), &wrong_pin))
            .collect(),
            5,
            "PIN",
        ),
        (
            "no such token",
            token_args(
                &token,
                &server,
                "update",
                "pkcs11:token=no-such-token;object=rsa-cert",
                RSA_TRUST_ANCHOR_ARN,
            ),
            5,
            "ra-test",
        ),
        (
            "no such object",
            token_args(
                &token,
                &server,
                "update",
                "pkcs11:token=ra-test;object=missing;type=cert",
                RSA_TRUST_ANCHOR_ARN,
            ),
            5,
            "missing",
        ),
        (
            "malformed URI",
            token_args(
                &token,
                &server,
                "update",
                "pkcs11:token=ra-test;id=%zz",
                RSA_TRUST_ANCHOR_ARN,
            ),
            2,
            "--certificate",
        ),
        (
            "always-auth without --reuse-pin",
            token_args(
                &token,
                &server,
                "update",
                "pkcs11:token=ra-test;object=rsa-always;type=cert",
                RSA_TRUST_ANCHOR_ARN,
            ),
            2,
            "--reuse-pin",
        ),
        (
            "missing module",
            {
                let mut l = token_args(
                    &token,
                    &server,
                    "update",
                    "pkcs11:token=ra-test;object=rsa-cert;type=cert",
                    RSA_TRUST_ANCHOR_ARN,
                );
                let i = l.iter().position(|a| a == MODULE).unwrap();
                l[i] = "/nonexistent/libmissing.so".into();
                l
            },
            2,
            "/nonexistent/libmissing.so",
        ),
    ];
    for (name, mut list, status, message) in cases {
        list.push("--once".into());
        let output = token.run(&list, &file);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(status), "{name}: {err}");
        assert!(
            err.contains(message),
            "{name}: message lacks {message:?}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            original,
            "{name}: file changed"
        );
    }
    // The wrong PIN was tried once: the right one still works and no lockout followed.
    let list = token_args(
        &token,
        &server,
        "credential-process",
        "pkcs11:token=ra-test;object=rsa-cert;type=cert",
        RSA_TRUST_ANCHOR_ARN,
    );
    let output = token.run(&list, &file);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn pkcs11_debug_logs_never_contain_pin() {
    let token = Token::new("p11-secret");
    let server = start_server();
    let pin = "83917465";
    let changed = Command::new("pkcs11-tool")
        .args([
            "--module",
            MODULE,
            "--token-label",
            "ra-test",
            "--login",
            "--pin",
            "1234",
            "--change-pin",
            "--new-pin",
            pin,
        ])
        .env("SOFTHSM2_CONF", token.conf())
        .output()
        .unwrap();
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let mut list = args(&[
        "credential-process",
        "--debug",
        "--certificate",
        "pkcs11:token=ra-test;object=rsa-cert;type=cert",
        "--pkcs11-lib",
        MODULE,
    ]);
    list.extend(identity_args(&server, RSA_TRUST_ANCHOR_ARN));
    let conf = token.conf();
    let output = run(
        &list,
        &token.dir.path("unused"),
        &[
            ("SOFTHSM2_CONF", conf.as_str()),
            ("RA_AGENT_PKCS11_PIN", pin),
        ],
    );
    assert_process_json(&output, &server);
    let err = stderr(&output);
    assert!(err.contains("DEBUG"), "debug logging was not on: {err}");
    assert!(!err.contains(pin), "PIN in logs: {err}");
    let issued = server.issued().pop().unwrap();
    assert!(!err.contains(&issued.secret_access_key));
    assert!(!err.contains(&issued.session_token));
}
