//! Error variants and their classification, against real SoftHSM2 tokens.
#![allow(clippy::unwrap_used)] // Test helpers panic to report failures.

mod common;

use std::error::Error as _;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use ra_signer::Signer;
use ra_signer_pkcs11::{Error, ErrorKind, Pkcs11Config, Pkcs11Signer, TokenSummary};
use zeroize::Zeroizing;

use common::{SOFTHSM_MODULE, USER_PIN, config, uri};

fn open_error(config: Pkcs11Config) -> Error {
    match Pkcs11Signer::open(config) {
        Ok(signer) => panic!("open succeeded: {signer:?}"),
        Err(error) => error,
    }
}

token_test!(wrong_pin_is_tried_once, |dir| {
    let spy = common::spy_module();
    let error = open_error(
        Pkcs11Config::new(uri("pkcs11:token=ra-test;object=rsa-cert"))
            .with_module_path(&spy)
            .with_pin(Zeroizing::new("0000".into())),
    );
    assert!(matches!(error, Error::PinIncorrect { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Pin);
    assert!(!error.is_transient());
    assert_eq!(
        error.pkcs11_code().map(|(rv, _)| rv),
        Some(RvError::PinIncorrect)
    );
    assert_eq!(dir.spy_calls("C_Login"), 1);
    assert_eq!(dir.spy_results("C_Login"), ["CKR_PIN_INCORRECT"]);

    // The failed attempt did not lock the token: the right PIN still works.
    let signer =
        Pkcs11Signer::open(config("pkcs11:token=ra-test;object=rsa-cert").with_module_path(&spy))
            .unwrap();
    signer.sign(b"message").unwrap();
    assert_eq!(dir.spy_results("C_Login"), ["CKR_PIN_INCORRECT", "CKR_OK"]);
});

token_test!(wrong_pin_survives_the_signer_error_box, |_dir| {
    let error = open_error(
        Pkcs11Config::new(uri("pkcs11:token=ra-test;object=ec256"))
            .with_module_path(SOFTHSM_MODULE)
            .with_pin(Zeroizing::new("9999".into())),
    );
    let boxed: ra_signer::Error = error.into();
    assert!(matches!(boxed, ra_signer::Error::Backend { .. }));
    let inner = boxed
        .source()
        .and_then(|source| source.downcast_ref::<Error>())
        .expect("the source is the PKCS#11 error");
    assert_eq!(inner.kind(), ErrorKind::Pin);
});

token_test!(missing_pin_is_reported, |_dir| {
    // The certificate is public and found without a PIN; the key needs a login.
    let error = open_error(
        Pkcs11Config::new(uri("pkcs11:token=ra-test;object=rsa-cert"))
            .with_module_path(SOFTHSM_MODULE),
    );
    assert!(matches!(error, Error::PinRequired { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("pin-source"), "{error}");
});

token_test!(unknown_token_label_lists_seen_tokens, |_dir| {
    let error = open_error(config("pkcs11:token=no-such-token;object=rsa-cert"));
    let Error::TokenNotFound { filter, seen } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(filter, "pkcs11:token=no-such-token");
    let labels: Vec<&str> = seen
        .iter()
        .filter(|t| t.initialized)
        .map(|t| t.label.as_str())
        .collect();
    assert_eq!(labels, ["ra-test"]);
    assert_eq!(error.kind(), ErrorKind::NotFound);
    let message = error.to_string();
    assert!(message.contains("no-such-token"), "{message}");
    assert!(message.contains("token \"ra-test\""), "{message}");
    let serial = &seen.iter().find(|t| t.initialized).unwrap().serial;
    assert!(message.contains(serial.as_str()), "{message}");
});

token_test!(unknown_serial_and_slot_id_do_not_match, |_dir| {
    let error = open_error(config("pkcs11:serial=0000000000000000;object=rsa-cert"));
    assert!(matches!(error, Error::TokenNotFound { .. }), "{error:?}");
    let error = open_error(config(
        "pkcs11:slot-id=4294967295;token=ra-test;object=rsa-cert",
    ));
    assert!(matches!(error, Error::TokenNotFound { .. }), "{error:?}");
});

token_test!(unknown_certificate_lists_certificates, |_dir| {
    let error = open_error(config("pkcs11:token=ra-test;object=no-such-cert"));
    let Error::ObjectNotFound {
        object, available, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(object, "certificate with label \"no-such-cert\"");
    assert!(
        available.contains(&"certificate id 01 label \"rsa-cert\"".to_owned()),
        "{available:?}"
    );
    assert_eq!(error.kind(), ErrorKind::NotFound);
});

token_test!(certificate_without_key_is_reported, |_dir| {
    // The intermediate sits on the token with id 11, and no key has that id or label.
    let error = open_error(config("pkcs11:token=ra-test;object=rsa-int"));
    let Error::ObjectNotFound {
        object, available, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(object.starts_with("private key with id 11"), "{object}");
    assert!(
        available.contains(&"private key id 01 label \"rsa-key\"".to_owned()),
        "{available:?}"
    );
});

token_test!(key_of_another_certificate_is_a_mismatch, |_dir| {
    // Same key type: only the probe signature can tell.
    let error = open_error(
        config("pkcs11:token=ra-test;object=ec256")
            .with_private_key(uri("pkcs11:token=ra-test;id=%03")),
    );
    assert!(matches!(error, Error::KeyMismatch { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("id 03"), "{error}");

    // Different key type: caught before signing.
    let error = open_error(
        config("pkcs11:token=ra-test;object=rsa-cert")
            .with_private_key(uri("pkcs11:token=ra-test;id=%02")),
    );
    assert!(matches!(error, Error::KeyMismatch { .. }), "{error:?}");
});

token_test!(always_authenticate_key_needs_reuse_pin, |_dir| {
    let error = open_error(config("pkcs11:token=ra-test;object=rsa-always"));
    assert!(matches!(error, Error::ReusePinRequired { .. }), "{error:?}");
    assert!(error.to_string().contains("--reuse-pin"), "{error}");
    assert_eq!(error.kind(), ErrorKind::Config);
});

token_test!(always_authenticate_ec_key_is_unsupported, |_dir| {
    // SoftHSM 2.6.1 offers CKM_ECDSA only, which cannot take a login between
    // C_SignInit and C_Sign through cryptoki.
    let error = open_error(config("pkcs11:token=ra-test;object=ec-always").with_reuse_pin(true));
    assert!(
        matches!(error, Error::UnsupportedMechanism { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("CKM_ECDSA_SHA256"), "{error}");
});

token_test!(logs_and_errors_never_show_the_pin, |dir| {
    const SECRET_PIN: &str = "Zq9-secret-pin-77";
    const WRONG_PIN: &str = "Wx8-wrong-pin-55";
    let pkcs11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = pkcs11.get_slots_with_initialized_token().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(USER_PIN)))
        .unwrap();
    session
        .set_pin(&AuthPin::from(USER_PIN), &AuthPin::from(SECRET_PIN))
        .unwrap();
    session.logout().unwrap();
    drop(session);

    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{SECRET_PIN}\n")).unwrap();
    let text = format!(
        "pkcs11:token=ra-test;object=rsa-always?pin-source={}&module-path={SOFTHSM_MODULE}",
        pin_file.display()
    );
    let config = Pkcs11Config::new(uri(&text)).with_reuse_pin(true);
    let signer = Pkcs11Signer::open(config.clone()).unwrap();
    signer.sign(b"message").unwrap();
    let debug = format!("{signer:?} {config:?}");
    drop(signer);

    let error = open_error(Pkcs11Config::new(uri(&format!(
        "pkcs11:token=ra-test;object=ec256?pin-value={WRONG_PIN}&module-path={SOFTHSM_MODULE}"
    ))));
    assert!(matches!(error, Error::PinIncorrect { .. }), "{error:?}");
    let error_text = format!("{error} {error:?}");

    let logs = common::captured_logs();
    assert!(
        logs.iter().any(|l| l.contains("ra-test")),
        "nothing was logged"
    );
    for pin in [SECRET_PIN, WRONG_PIN] {
        for line in &logs {
            assert!(!line.contains(pin), "log line shows the PIN: {line}");
        }
        assert!(!debug.contains(pin), "Debug shows the PIN: {debug}");
        assert!(
            !error_text.contains(pin),
            "error shows the PIN: {error_text}"
        );
    }
});

#[test]
fn missing_module_names_the_path() {
    let error = open_error(
        Pkcs11Config::new(uri("pkcs11:token=ra-test"))
            .with_module_path("/nonexistent/libra-test-module.so"),
    );
    assert!(matches!(error, Error::ModuleLoad { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/libra-test-module.so"),
        "{error}"
    );
    assert!(error.source().is_some());
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[test]
fn uri_errors_are_config_errors() {
    for text in [
        "pkcs11:id=%zz",
        "pkcs11:token=a;token=b",
        "pkcs11:tokn=a",
        "http://example.invalid/",
    ] {
        let error = ra_signer_pkcs11::Pkcs11Uri::parse(text).unwrap_err();
        assert!(
            matches!(error, Error::InvalidUri { .. }),
            "{text}: {error:?}"
        );
        assert_eq!(error.kind(), ErrorKind::Config, "{text}");
    }
}

#[test]
fn conflicting_settings_are_config_errors() {
    let error = open_error(config("pkcs11:token=ra-test;object=x?pin-value=1"));
    assert!(matches!(error, Error::InvalidConfig(_)), "{error:?}");
    let error = open_error(config("pkcs11:token=ra-test;type=private"));
    assert!(matches!(error, Error::InvalidConfig(_)), "{error:?}");
}

#[test]
fn token_summary_display_names_label_and_serial() {
    let summary = TokenSummary {
        slot_id: 3,
        label: "ra-test".into(),
        serial: "abc123".into(),
        manufacturer: "SoftHSM project".into(),
        model: "SoftHSM v2".into(),
        initialized: true,
    };
    assert_eq!(
        summary.to_string(),
        "token \"ra-test\" serial \"abc123\" (SoftHSM project SoftHSM v2, slot 3)"
    );
}

#[test]
fn error_kind_follows_the_return_code() {
    let call_error = |rv| Error::Pkcs11 {
        context: "signing".into(),
        source: CkError::Pkcs11(rv, cryptoki::context::Function::Sign),
    };
    for rv in [
        RvError::SessionHandleInvalid,
        RvError::SessionClosed,
        RvError::DeviceRemoved,
        RvError::TokenNotPresent,
        RvError::CryptokiNotInitialized,
    ] {
        assert!(call_error(rv).is_transient(), "{rv:?}");
        assert_eq!(call_error(rv).kind(), ErrorKind::Transient, "{rv:?}");
    }
    for rv in [RvError::GeneralError, RvError::KeyFunctionNotPermitted] {
        assert!(!call_error(rv).is_transient(), "{rv:?}");
        assert_eq!(call_error(rv).kind(), ErrorKind::Other, "{rv:?}");
    }
}
