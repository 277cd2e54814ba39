//! The signer conformance suite and object lookup against real SoftHSM2 tokens.
#![allow(clippy::unwrap_used)] // Test helpers panic to report failures.

mod common;

use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use ra_signer::{Algorithm, Certificate, Signer};
use ra_signer_pkcs11::{Pkcs11Config, Pkcs11Signer};
use zeroize::Zeroizing;

use common::{SOFTHSM_MODULE, USER_PIN, config, pem_certificates, uri, vectors};

fn open(config: Pkcs11Config) -> Pkcs11Signer {
    Pkcs11Signer::open(config).unwrap_or_else(|e| panic!("open failed: {e} ({e:?})"))
}

/// Opens SoftHSM directly, next to any signer in the process, and logs in.
fn admin_session() -> (Pkcs11, cryptoki::session::Session) {
    let pkcs11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    match pkcs11.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    )) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label() == common::TOKEN_LABEL)
        .unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    (pkcs11, session)
}

token_test!(rsa_key_passes_conformance, |_dir| {
    // The certificate is labelled rsa-cert and the key rsa-key: only CKA_ID links them.
    let signer = open(config("pkcs11:token=ra-test;object=rsa-cert;type=cert"));
    ra_signer::conformance::check(&signer).unwrap();
    assert_eq!(signer.algorithm(), Algorithm::RsaPkcs1Sha256);
    let expected = pem_certificates(&vectors().join("rsa/leaf.pem"));
    assert_eq!(signer.certificate(), expected[0].as_slice());
});

token_test!(rsa_chain_comes_from_token, |_dir| {
    let signer = open(config("pkcs11:token=ra-test;object=rsa-cert"));
    let intermediate = pem_certificates(&vectors().join("rsa/int.pem"));
    assert_eq!(signer.chain(), intermediate.as_slice());
});

token_test!(p256_key_passes_conformance, |_dir| {
    let intermediate = pem_certificates(&vectors().join("ec/int.pem"));
    let signer = open(
        config("pkcs11:token=ra-test;object=ec256;type=cert")
            .with_intermediates(intermediate.clone()),
    );
    ra_signer::conformance::check(&signer).unwrap();
    assert_eq!(signer.algorithm(), Algorithm::EcdsaSha256);
    // The EC intermediate is not on the token, so the chain is the one given.
    assert_eq!(signer.chain(), intermediate.as_slice());
});

token_test!(p256_chain_skips_unrelated_intermediates, |_dir| {
    // The RSA intermediate on the token and a caller-given RSA one did not issue the EC
    // leaf, so neither may enter its chain.
    let unrelated = pem_certificates(&vectors().join("rsa/int.pem"));
    let signer = open(config("pkcs11:token=ra-test;object=ec256").with_intermediates(unrelated));
    assert!(signer.chain().is_empty());
});

token_test!(p384_key_passes_conformance, |dir| {
    let chain = pem_certificates(&dir.path().join("ec384-chain.pem"));
    let signer = open(config("pkcs11:token=ra-test;id=%03;type=cert").with_intermediates(chain));
    ra_signer::conformance::check(&signer).unwrap();
    let leaf = Certificate::from_der(signer.certificate().to_vec(), "leaf").unwrap();
    assert_eq!(leaf.key_kind(), ra_signer::KeyKind::P384);
    let expected = pem_certificates(&dir.path().join("ec384.pem"));
    assert_eq!(signer.certificate(), expected[0].as_slice());
    assert_eq!(signer.chain().len(), 1);
});

token_test!(always_authenticate_key_passes_conformance, |_dir| {
    let signer = open(config("pkcs11:token=ra-test;object=rsa-always").with_reuse_pin(true));
    ra_signer::conformance::check(&signer).unwrap();
});

token_test!(always_authenticate_logs_in_before_each_signature, |dir| {
    let spy = common::spy_module();
    let signer = open(
        config("pkcs11:token=ra-test;object=rsa-always")
            .with_module_path(&spy)
            .with_reuse_pin(true),
    );
    let logins_after_open = dir.spy_calls("C_Login");
    for _ in 0..3 {
        signer.sign(b"message").unwrap();
    }
    assert_eq!(dir.spy_calls("C_Login"), logins_after_open + 3);
    assert!(
        dir.spy_log().contains("CKU_CONTEXT_SPECIFIC"),
        "no context-specific login in the spy log"
    );
});

token_test!(softhsm_enforces_always_authenticate, |_dir| {
    // Without a context-specific login, SoftHSM 2.6.1 refuses to sign with a key that
    // has CKA_ALWAYS_AUTHENTICATE, so the signer's extra login is really needed.
    let (_pkcs11, session) = admin_session();
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(vec![0x04]),
        ])
        .unwrap();
    assert_eq!(keys.len(), 1);
    let result = session.sign(&Mechanism::Sha256RsaPkcs, keys[0], b"message");
    match result {
        Err(CkError::Pkcs11(rv, _)) => assert_eq!(rv, RvError::UserNotLoggedIn),
        other => panic!("sign without context login returned {other:?}"),
    }
});

token_test!(key_found_by_certificate_id, |_dir| {
    let signer = open(config("pkcs11:token=ra-test;object=rsa-cert"));
    ra_signer::check_key_matches(&signer, "rsa-cert").unwrap();
    let signer = open(
        config("pkcs11:token=ra-test;object=rsa-cert")
            .with_private_key(uri("pkcs11:token=ra-test;id=%01;type=private")),
    );
    ra_signer::check_key_matches(&signer, "rsa-cert").unwrap();
    let signer = open(
        config("pkcs11:token=ra-test;object=rsa-cert")
            .with_private_key(uri("pkcs11:object=rsa-key")),
    );
    ra_signer::check_key_matches(&signer, "rsa-cert").unwrap();
});

token_test!(key_found_by_label_when_id_differs, |_dir| {
    // A copy of the P-256 certificate under an ID that no key has, but with the key's
    // label: the lookup by CKA_ID finds nothing and falls back to the label.
    let (_pkcs11, session) = admin_session();
    let der = pem_certificates(&common::vectors().join("ec/leaf.pem")).remove(0);
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(vec![0x99]),
            Attribute::Label(b"ec256".to_vec()),
            Attribute::Subject(Vec::new()),
            Attribute::Value(der),
        ])
        .unwrap();
    drop(session);
    let signer = open(config("pkcs11:token=ra-test;id=%99;type=cert"));
    ra_signer::conformance::check(&signer).unwrap();
});

token_test!(certificate_given_as_der, |_dir| {
    let der = pem_certificates(&vectors().join("ec/leaf.pem")).remove(0);
    let config =
        Pkcs11Config::with_certificate_der(der.clone(), uri("pkcs11:token=ra-test;id=%02"))
            .with_module_path(SOFTHSM_MODULE)
            .with_pin(Zeroizing::new(USER_PIN.into()));
    let signer = open(config);
    ra_signer::conformance::check(&signer).unwrap();
    assert_eq!(signer.certificate(), der.as_slice());
});

token_test!(pin_read_from_pin_source, |dir| {
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
    let text = format!(
        "pkcs11:token=ra-test;object=ec256?pin-source={}&module-path={SOFTHSM_MODULE}",
        pin_file.display()
    );
    let signer = open(Pkcs11Config::new(uri(&text)));
    ra_signer::conformance::check(&signer).unwrap();
});

token_test!(p11_kit_proxy_is_the_default_module, |_dir| {
    // p11-kit loads SoftHSM through /usr/share/p11-kit/modules/softhsm2.module, next to
    // the OpenSC module, so the token is one of several slots with remapped slot IDs.
    let module_file = std::path::Path::new("/usr/share/p11-kit/modules/softhsm2.module");
    assert!(
        module_file.is_file(),
        "{} is missing; the softhsm2 package registers it",
        module_file.display()
    );
    let config = Pkcs11Config::new(uri("pkcs11:token=ra-test;object=ec256"))
        .with_pin(Zeroizing::new(USER_PIN.into()));
    let signer = open(config);
    ra_signer::conformance::check(&signer).unwrap();
    assert_eq!(signer.token().unwrap().label, "ra-test");
});

token_test!(slot_id_narrows_the_search, |_dir| {
    let signer = open(config("pkcs11:token=ra-test;object=ec256"));
    let slot_id = signer.token().unwrap().slot_id;
    drop(signer);
    let signer = open(config(&format!(
        "pkcs11:slot-id={slot_id};token=ra-test;object=ec256"
    )));
    ra_signer::conformance::check(&signer).unwrap();
});

token_test!(concurrent_signatures_share_one_session, |dir| {
    let spy = common::spy_module();
    let signer = Arc::new(open(
        config("pkcs11:token=ra-test;object=ec256").with_module_path(&spy),
    ));
    let sessions_after_open = dir.spy_calls("C_OpenSession");
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let signer = Arc::clone(&signer);
            std::thread::spawn(move || {
                for index in 0..10 {
                    let message = format!("thread {thread} message {index}");
                    let signature = signer.sign(message.as_bytes()).unwrap();
                    let certificate =
                        Certificate::from_der(signer.certificate().to_vec(), "leaf").unwrap();
                    assert!(ra_signer::verify_signature(
                        &certificate,
                        message.as_bytes(),
                        &signature
                    ));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(dir.spy_calls("C_OpenSession"), sessions_after_open);
    // The probe at open and 40 signatures; cryptoki calls C_Sign twice per signature,
    // for the length and then the value.
    assert_eq!(dir.spy_calls("C_Sign"), 2 * (1 + 40));
});

token_test!(rsa_pkcs_over_digest_info_verifies, |_dir| {
    // The CKM_RSA_PKCS fallback path: the token signs the DigestInfo the host builds, and
    // the result must be an ordinary RSASSA-PKCS1-v1_5 SHA-256 signature.
    let (_pkcs11, session) = admin_session();
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(vec![0x01]),
        ])
        .unwrap();
    let message = b"AWS4-X509-RSA-SHA256\n20261204T120000Z";
    let digest_info = ra_signer_pkcs11::mechanism::sha256_digest_info(message);
    let signature = session
        .sign(&Mechanism::RsaPkcs, keys[0], &digest_info)
        .unwrap();
    let leaf = ra_signer::read_certificates(&vectors().join("rsa/leaf.pem")).unwrap();
    assert!(ra_signer::verify_signature(&leaf[0], message, &signature));
});

token_test!(imported_keys_are_not_extractable, |_dir| {
    let (_pkcs11, session) = admin_session();
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    assert_eq!(keys.len(), 5);
    for key in keys {
        let attributes = session
            .get_attributes(key, &[AttributeType::Extractable, AttributeType::Sensitive])
            .unwrap();
        assert!(
            attributes.contains(&Attribute::Extractable(false)),
            "{attributes:?}"
        );
        assert!(
            attributes.contains(&Attribute::Sensitive(true)),
            "{attributes:?}"
        );
    }
});
