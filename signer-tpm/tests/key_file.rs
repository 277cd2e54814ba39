//! TSS2 private key files made with `openssl genpkey -provider tpm2`, under the owner
//! hierarchy and under a persistent parent.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Ca, Counting, Listen, Swtpm, assert_no_transients};
use ra_signer_tpm::{KeySource, TpmAuth, TpmSigner};

const PARENT: u32 = 0x8100_0001;
const PARENT_WITH_PASSWORD: u32 = 0x8100_0002;
const PARENT_PASSWORD: &str = "parent pw";

struct Case {
    name: &'static str,
    parent_password: Option<&'static str>,
    algorithm: &'static str,
    options: &'static [&'static str],
    ca: Ca,
    password: Option<&'static str>,
    parent: Option<u32>,
}

const CASES: [Case; 7] = [
    Case {
        name: "rsa-owner",
        algorithm: "RSA",
        options: &["bits:2048"],
        ca: Ca::Rsa,
        password: None,
        parent: None,
        parent_password: None,
    },
    Case {
        name: "rsa-owner-pw",
        algorithm: "RSA",
        options: &["bits:2048"],
        ca: Ca::Rsa,
        password: Some("rsa file pw"),
        parent: None,
        parent_password: None,
    },
    Case {
        name: "p256-owner-pw",
        algorithm: "EC",
        options: &["group:P-256"],
        ca: Ca::Ec,
        password: Some("p256-pw"),
        parent: None,
        parent_password: None,
    },
    Case {
        name: "p384-owner",
        algorithm: "EC",
        options: &["group:P-384"],
        ca: Ca::Ec,
        password: None,
        parent: None,
        parent_password: None,
    },
    Case {
        name: "p256-persistent-parent",
        algorithm: "EC",
        options: &["group:P-256"],
        ca: Ca::Ec,
        password: None,
        parent: Some(PARENT),
        parent_password: None,
    },
    Case {
        name: "rsa-persistent-parent-pw",
        algorithm: "RSA",
        options: &["bits:2048"],
        ca: Ca::Rsa,
        password: Some("under-parent"),
        parent: Some(PARENT),
        parent_password: None,
    },
    Case {
        name: "p384-parent-with-password",
        algorithm: "EC",
        options: &["group:P-384"],
        ca: Ca::Ec,
        password: Some("p384 key"),
        parent: Some(PARENT_WITH_PASSWORD),
        parent_password: Some(PARENT_PASSWORD),
    },
];

fn auth_for(case: &Case) -> TpmAuth {
    let mut auth = TpmAuth::no_password();
    if let Some(password) = case.password {
        auth = auth.with_key_password(password);
    }
    if let Some(password) = case.parent_password {
        auth = auth.with_parent_password(password);
    }
    auth
}

fn check_all_files(listen: Listen) {
    let swtpm = Swtpm::start(listen);
    swtpm.persistent_parent(PARENT, None);
    swtpm.persistent_parent(PARENT_WITH_PASSWORD, Some(PARENT_PASSWORD));
    let mut fixtures = Vec::new();
    for case in &CASES {
        let (key, public) = swtpm.key_file_with_parent_password(
            case.name,
            case.algorithm,
            case.options,
            case.password,
            case.parent,
            case.parent_password,
        );
        let (certificate, chain) = swtpm.issue_certificate(&public, case.ca);
        fixtures.push((case, key, certificate, chain));
    }
    assert_no_transients(&swtpm);

    for (case, key, certificate, chain) in fixtures {
        let counting = Counting::new(swtpm.address());
        let source = KeySource::parse(key.to_str().unwrap()).unwrap();
        let signer = TpmSigner::new(
            Box::new(counting.clone()),
            source,
            auth_for(case),
            certificate,
            chain,
        )
        .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        ra_signer::conformance::check(&signer).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_no_transients(&swtpm);

        // The probe in the constructor and four conformance messages: one load each.
        assert_eq!(counting.count(common::CC_SIGN), 5, "{}", case.name);
        assert_eq!(counting.count(common::CC_LOAD), 5, "{}", case.name);
        let primaries = if case.parent.is_some() { 0 } else { 5 };
        assert_eq!(
            counting.count(common::CC_CREATE_PRIMARY),
            primaries,
            "{}",
            case.name
        );
    }
}

#[test]
fn key_files_over_swtpm_tcp() {
    check_all_files(Listen::Tcp);
}

#[test]
fn key_files_over_unix_socket() {
    check_all_files(Listen::Unix);
}

#[test]
fn key_file_open_by_path_string() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let (key, public) = swtpm.key_file("p256", "EC", &["group:P-256"], None, None);
    let (certificate, chain) = swtpm.issue_certificate(&public, Ca::Ec);
    assert!(ra_signer_tpm::is_tpm_key(key.to_str().unwrap()));
    assert!(!ra_signer_tpm::is_tpm_key(public.to_str().unwrap()));
    let signer = TpmSigner::open(
        &swtpm.device(),
        key.to_str().unwrap(),
        TpmAuth::no_password(),
        certificate,
        chain,
    )
    .unwrap();
    ra_signer::conformance::check(&signer).unwrap();
    assert_no_transients(&swtpm);
}

#[test]
fn key_file_under_owner_with_hierarchy_password() {
    let swtpm = Swtpm::start(Listen::Tcp);
    // The storage primary key derives from the owner seed, not from the owner
    // password, so setting the password after creating the key file changes nothing
    // for TPM2_Load and leaves the openssl tools free to read the key beforehand.
    let (key, public) = swtpm.key_file("owner-pw", "EC", &["group:P-256"], None, None);
    swtpm.run("tpm2_changeauth", &["-c", "o", "str:owner-pw"]);
    let (certificate, chain) = swtpm.issue_certificate(&public, Ca::Ec);
    let source = || KeySource::parse(key.to_str().unwrap()).unwrap();

    let missing = TpmSigner::new(
        Box::new(swtpm.address()),
        source(),
        TpmAuth::no_password(),
        certificate.clone(),
        chain.clone(),
    )
    .unwrap_err();
    let error = ra_signer_tpm::tpm_error(&missing).expect("a TPM error");
    assert!(
        matches!(
            error,
            ra_signer_tpm::TpmError::AuthFailed {
                command: "TPM2_CreatePrimary",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        ra_signer_tpm::classify(&missing),
        Some(ra_signer_tpm::ErrorClass::AuthFailure)
    );
    assert!(error.to_string().contains("owner hierarchy"), "{error}");
    assert_no_transients(&swtpm);

    let signer = TpmSigner::new(
        Box::new(swtpm.address()),
        source(),
        TpmAuth::no_password().with_hierarchy_password("owner-pw"),
        certificate,
        chain,
    )
    .unwrap();
    ra_signer::conformance::check(&signer).unwrap();
    assert_no_transients(&swtpm);
}
