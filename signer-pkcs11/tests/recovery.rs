//! Session recovery: the signer reopens its session once when the module or token goes
//! away under it, and never resends a rejected PIN.
//!
//! A second cryptoki handle on the same SoftHSM library plays the other party: its
//! `C_Finalize` closes every session of the process, as a module reset or token removal
//! would.
#![allow(clippy::unwrap_used)] // Test helpers panic to report failures.

mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use ra_signer::Signer;
use ra_signer_pkcs11::{Error, ErrorKind, Pkcs11Signer};

use common::{SO_PIN, SOFTHSM_MODULE, TOKEN_LABEL, USER_PIN, config, run, vectors};

fn admin() -> Pkcs11 {
    let pkcs11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    pkcs11
}

/// Finalizes SoftHSM for the whole process, which closes every session.
fn finalize_module() {
    admin().finalize().unwrap();
}

/// Deletes the token and creates it again with `key` and `cert` under id 01. The new
/// token has the same label and a new serial.
fn recreate_token(key: &std::path::Path, cert: &std::path::Path) {
    run("softhsm2-util", &["--delete-token", "--token", TOKEN_LABEL]);
    create_token(key, cert);
}

/// Creates the token with `key` and `cert` under id 01.
fn create_token(key: &std::path::Path, cert: &std::path::Path) {
    run(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ],
    );
    let module = ["--module", SOFTHSM_MODULE, "--token-label", TOKEN_LABEL];
    let login = ["--login", "--pin", USER_PIN];
    let key = key.to_str().unwrap();
    let cert = cert.to_str().unwrap();
    let mut args: Vec<&str> = module.iter().chain(&login).copied().collect();
    args.extend([
        "--write-object",
        key,
        "--type",
        "privkey",
        "--id",
        "01",
        "--sensitive",
    ]);
    run("pkcs11-tool", &args);
    let mut args: Vec<&str> = module.iter().chain(&login).copied().collect();
    args.extend(["--write-object", cert, "--type", "cert", "--id", "01"]);
    run("pkcs11-tool", &args);
}

token_test!(session_reopened_after_module_reset, |dir| {
    let spy = common::spy_module();
    let signer =
        Pkcs11Signer::open(config("pkcs11:token=ra-test;object=rsa-cert").with_module_path(&spy))
            .unwrap();
    signer.sign(b"before").unwrap();
    assert_eq!(dir.spy_calls("C_OpenSession"), 1);

    // Finalize and initialize again: the signer's session handle is now invalid.
    finalize_module();
    let _admin = admin();

    signer.sign(b"after").unwrap();
    assert_eq!(dir.spy_calls("C_OpenSession"), 2);
    assert_eq!(dir.spy_calls("C_Login"), 2);
    let results = dir.spy_results("C_SignInit");
    assert!(
        results.contains(&"CKR_SESSION_HANDLE_INVALID".to_owned()),
        "{results:?}"
    );

    // The new session serves later signatures without another reopen.
    signer.sign(b"later").unwrap();
    assert_eq!(dir.spy_calls("C_OpenSession"), 2);
});

token_test!(session_reopened_after_module_finalized, |_dir| {
    let signer = Pkcs11Signer::open(config("pkcs11:token=ra-test;object=ec256")).unwrap();
    finalize_module();
    // The signer initializes the module again itself.
    signer.sign(b"after finalize").unwrap();
    ra_signer::conformance::check(&signer).unwrap();
});

token_test!(token_recreated_with_same_key, |_dir| {
    let signer = Pkcs11Signer::open(config("pkcs11:token=ra-test;object=rsa-cert")).unwrap();
    let old_serial = signer.token().unwrap().serial;

    finalize_module();
    recreate_token(
        &vectors().join("rsa/leaf.key"),
        &vectors().join("rsa/leaf.pem"),
    );

    ra_signer::conformance::check(&signer).unwrap();
    let new_serial = signer.token().unwrap().serial;
    assert_ne!(new_serial, old_serial);
});

token_test!(token_recreated_with_other_key_is_a_mismatch, |_dir| {
    let signer = Pkcs11Signer::open(config("pkcs11:token=ra-test;object=rsa-cert")).unwrap();

    finalize_module();
    recreate_token(
        &vectors().join("rsa/leaf-direct.key"),
        &vectors().join("rsa/leaf-direct.pem"),
    );

    let error = signer.sign_message(b"after").unwrap_err();
    assert!(matches!(error, Error::KeyMismatch { .. }), "{error:?}");
});

token_test!(token_removed_then_restored, |_dir| {
    let signer = Pkcs11Signer::open(config("pkcs11:token=ra-test;object=rsa-cert")).unwrap();

    finalize_module();
    run("softhsm2-util", &["--delete-token", "--token", TOKEN_LABEL]);
    let error = signer.sign_message(b"while removed").unwrap_err();
    assert!(matches!(error, Error::TokenNotFound { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::NotFound);

    // SoftHSM reads its token directory at C_Initialize, so a reset makes it see the
    // new token, as replugging a USB token would.
    create_token(
        &vectors().join("rsa/leaf.key"),
        &vectors().join("rsa/leaf.pem"),
    );
    finalize_module();
    signer.sign(b"restored").unwrap();
});

token_test!(rejected_pin_is_not_sent_again, |dir| {
    let spy = common::spy_module();
    let signer =
        Pkcs11Signer::open(config("pkcs11:token=ra-test;object=rsa-cert").with_module_path(&spy))
            .unwrap();
    assert_eq!(dir.spy_calls("C_Login"), 1);

    // Someone changes the PIN and the session goes away.
    let pkcs11 = admin();
    let slot = pkcs11.get_slots_with_initialized_token().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    session
        .set_pin(&AuthPin::from(USER_PIN), &AuthPin::from("98765"))
        .unwrap();
    drop(session);
    drop(pkcs11);
    finalize_module();

    let error = signer.sign_message(b"first").unwrap_err();
    assert!(matches!(error, Error::PinIncorrect { .. }), "{error:?}");
    assert_eq!(dir.spy_calls("C_Login"), 2);

    for _ in 0..3 {
        let error = signer.sign_message(b"again").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Pin, "{error:?}");
    }
    assert_eq!(dir.spy_calls("C_Login"), 2, "a rejected PIN was sent again");
});
