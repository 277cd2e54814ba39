//! Persistent-handle keys made with tpm2-tools, signed through each transport.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Ca, Listen, Swtpm, assert_no_transients};
use ra_signer::Signer;
use ra_signer_tpm::{TpmAddress, TpmAuth, TpmSigner};

/// Key specs for tpm2_create, the CA that issues their certificate, and a password.
const KEYS: [(&str, Ca, u32, Option<&str>); 6] = [
    ("rsa2048", Ca::Rsa, 0x8100_0101, None),
    ("rsa2048", Ca::Rsa, 0x8100_0102, Some("rsa-key-pw")),
    ("ecc256", Ca::Ec, 0x8100_0103, None),
    ("ecc256", Ca::Ec, 0x8100_0104, Some("p256 pw")),
    ("ecc384", Ca::Ec, 0x8100_0105, None),
    ("ecc384", Ca::Ec, 0x8100_0106, Some("p384-pw")),
];

fn auth_for(password: Option<&str>) -> TpmAuth {
    match password {
        Some(password) => TpmAuth::no_password().with_key_password(password),
        None => TpmAuth::no_password(),
    }
}

fn check_all_keys(listen: Listen, device_for: impl Fn(&Swtpm) -> String) {
    let swtpm = Swtpm::start(listen);
    let mut fixtures = Vec::new();
    for (algorithm, ca, handle, password) in KEYS {
        let public = swtpm.persistent_key(algorithm, handle, password);
        let (certificate, chain) = swtpm.issue_certificate(&public, ca);
        fixtures.push((algorithm, handle, password, certificate, chain));
    }
    assert_no_transients(&swtpm);

    let device = device_for(&swtpm);
    for (algorithm, handle, password, certificate, chain) in fixtures {
        let signer = TpmSigner::open(
            &device,
            &format!("handle:0x{handle:08x}"),
            auth_for(password),
            certificate,
            chain,
        )
        .unwrap_or_else(|e| panic!("{algorithm} at 0x{handle:08x}: {e:?}"));
        ra_signer::conformance::check(&signer)
            .unwrap_or_else(|e| panic!("{algorithm} at 0x{handle:08x}: {e}"));
        assert_eq!(signer.chain().len(), 1);
        assert_no_transients(&swtpm);
    }
}

#[test]
fn persistent_keys_over_swtpm_tcp() {
    check_all_keys(Listen::Tcp, Swtpm::device);
}

#[test]
fn persistent_keys_over_unix_socket() {
    check_all_keys(Listen::Unix, |swtpm| {
        format!("unix:{}", swtpm.socket_path().display())
    });
}

#[test]
fn persistent_keys_over_mssim_framing() {
    check_all_keys(Listen::Tcp, |swtpm| {
        format!("mssim:host=127.0.0.1,port={}", swtpm.port)
    });
}

#[test]
fn bare_socket_path_works_as_device() {
    let swtpm = Swtpm::start(Listen::Unix);
    let public = swtpm.persistent_key("ecc256", 0x8100_0201, None);
    let (certificate, chain) = swtpm.issue_certificate(&public, Ca::Ec);
    let device = swtpm.socket_path().display().to_string();
    assert!(matches!(
        TpmAddress::parse(&device).unwrap(),
        TpmAddress::Device(_)
    ));
    let signer = TpmSigner::open(
        &device,
        "handle:81000201",
        TpmAuth::no_password(),
        certificate,
        chain,
    )
    .unwrap();
    ra_signer::conformance::check(&signer).unwrap();
}
