//! Failure paths: wrong and missing passwords, lockout, missing handles and devices,
//! blobs from another TPM, unsupported keys, TPM warnings, and no transient object left
//! behind by any of them.
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Ca, Counting, Listen, Swtpm, assert_no_transients};
use ra_signer::Certificate;
use ra_signer_tpm::transport::Transport;
use ra_signer_tpm::{
    Connect, ErrorClass, KeySource, TpmAddress, TpmAuth, TpmError, TpmSigner, classify, tpm_error,
};

const KEY: u32 = 0x8100_0101;
const RC_RETRY: u32 = 0x922;
const RC_AUTH_FAIL_SESSION_1: u32 = 0x98E;

/// Asserts that the TPM checked the key password of TPM2_Sign exactly once.
///
/// The first authorization failure on a dictionary-attack protected object after TPM
/// startup makes the TPM return TPM_RC_RETRY without counting the failure, as swtpm
/// 0.7.1 does. The resent command then fails with TPM_RC_AUTH_FAIL.
fn assert_password_checked_once(counting: &Counting) {
    let sign = counting.response_codes(common::CC_SIGN);
    let (failures, others): (Vec<u32>, Vec<u32>) =
        sign.iter().partition(|&&rc| rc == RC_AUTH_FAIL_SESSION_1);
    assert_eq!(failures.len(), 1, "TPM2_Sign responses {sign:x?}");
    assert!(
        others.iter().all(|&rc| rc == RC_RETRY),
        "TPM2_Sign responses {sign:x?}"
    );
    assert_eq!(sign.last(), Some(&RC_AUTH_FAIL_SESSION_1));
}

fn unrelated_certificate(ca: Ca) -> Certificate {
    let dir = match ca {
        Ca::Rsa => "rsa",
        Ca::Ec => "ec",
    };
    let path = common::pki_dir().join(dir).join("leaf.pem");
    ra_signer::read_certificates(&path).unwrap().remove(0)
}

fn open_counted(
    counting: &Counting,
    key: KeySource,
    auth: TpmAuth,
    certificate: Certificate,
) -> Result<TpmSigner, ra_signer::Error> {
    TpmSigner::new(
        Box::new(counting.clone()),
        key,
        auth,
        certificate,
        Vec::new(),
    )
}

fn persistent(handle: u32) -> KeySource {
    KeySource::parse(&format!("handle:0x{handle:08x}")).unwrap()
}

fn file(path: &Path) -> KeySource {
    KeySource::parse(path.to_str().unwrap()).unwrap()
}

#[test]
fn wrong_password_on_persistent_key_fails_once() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let public = swtpm.persistent_key("ecc256", KEY, Some("right"));
    let (certificate, _) = swtpm.issue_certificate(&public, Ca::Ec);
    let before = ra_signer_tpm::lockout_counter(&swtpm.address()).unwrap();

    let counting = Counting::new(swtpm.address());
    let auth = TpmAuth::no_password().with_key_password("wrong");
    let error = open_counted(&counting, persistent(KEY), auth, certificate).unwrap_err();

    let tpm = tpm_error(&error).expect("a TPM error");
    assert!(
        matches!(
            tpm,
            TpmError::AuthFailed {
                command: "TPM2_Sign",
                ..
            }
        ),
        "{tpm:?}"
    );
    assert_eq!(classify(&error), Some(ErrorClass::AuthFailure));
    assert_eq!(tpm.response_code().unwrap().base(), 0x08E);
    let message = tpm.to_string();
    assert!(message.contains("0x81000101"), "{message}");
    assert!(message.contains("not retried"), "{message}");
    assert!(!message.contains("wrong\""), "{message}");
    assert_password_checked_once(&counting);

    let after = ra_signer_tpm::lockout_counter(&swtpm.address()).unwrap();
    assert_eq!(after, before + 1, "exactly one dictionary-attack failure");
    assert_no_transients(&swtpm);
}

#[test]
fn wrong_password_on_key_file_fails_once() {
    let swtpm = Swtpm::start(Listen::Unix);
    let (key, public) = swtpm.key_file("p384", "EC", &["group:P-384"], Some("right"), None);
    let (certificate, _) = swtpm.issue_certificate(&public, Ca::Ec);
    let before = ra_signer_tpm::lockout_counter(&swtpm.address()).unwrap();

    let counting = Counting::new(swtpm.address());
    let auth = TpmAuth::no_password().with_key_password("wrong");
    let error = open_counted(&counting, file(&key), auth, certificate).unwrap_err();

    assert_eq!(classify(&error), Some(ErrorClass::AuthFailure), "{error:?}");
    assert_eq!(counting.count(common::CC_LOAD), 1);
    assert_password_checked_once(&counting);
    let after = ra_signer_tpm::lockout_counter(&swtpm.address()).unwrap();
    assert_eq!(after, before + 1, "exactly one dictionary-attack failure");
    // The key was loaded before TPM2_Sign failed, so this checks the flush on error.
    assert_no_transients(&swtpm);
}

#[test]
fn key_file_password_policy_checked_before_tpm() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let (open_key, open_public) = swtpm.key_file("open", "EC", &["group:P-256"], None, None);
    let (locked_key, locked_public) =
        swtpm.key_file("locked", "EC", &["group:P-256"], Some("pw"), None);
    let (open_cert, _) = swtpm.issue_certificate(&open_public, Ca::Ec);
    let (locked_cert, _) = swtpm.issue_certificate(&locked_public, Ca::Ec);

    let counting = Counting::new(swtpm.address());
    let given = TpmAuth::no_password().with_key_password("pw");
    let error = open_counted(&counting, file(&open_key), given, open_cert).unwrap_err();
    let message = tpm_error(&error).unwrap().to_string();
    assert!(message.contains("emptyAuth"), "{message}");
    assert!(message.contains("open.key.pem"), "{message}");
    assert_eq!(classify(&error), Some(ErrorClass::AuthFailure));

    let missing = TpmAuth::no_password();
    let error = open_counted(&counting, file(&locked_key), missing, locked_cert).unwrap_err();
    let message = tpm_error(&error).unwrap().to_string();
    assert!(message.contains("no key password was given"), "{message}");

    let sent: usize = counting.counts.lock().unwrap().values().sum();
    assert_eq!(sent, 0, "no command reaches the TPM");
}

#[test]
fn lockout_is_reported_with_recovery() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let public = swtpm.persistent_key("ecc256", KEY, Some("right"));
    let (certificate, _) = swtpm.issue_certificate(&public, Ca::Ec);
    swtpm.run(
        "tpm2_dictionarylockout",
        &[
            "--setup-parameters",
            "--max-tries=1",
            "--recovery-time=600",
            "--lockout-recovery-time=1",
        ],
    );

    let wrong = TpmAuth::no_password().with_key_password("wrong");
    let error = TpmSigner::new(
        Box::new(swtpm.address()),
        persistent(KEY),
        wrong,
        certificate.clone(),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(classify(&error), Some(ErrorClass::AuthFailure), "{error:?}");

    let right = TpmAuth::no_password().with_key_password("right");
    let error = TpmSigner::new(
        Box::new(swtpm.address()),
        persistent(KEY),
        right.clone(),
        certificate.clone(),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(classify(&error), Some(ErrorClass::Lockout), "{error:?}");
    let message = tpm_error(&error).unwrap().to_string();
    assert!(message.contains("dictionary-attack lockout"), "{message}");
    assert!(
        message.contains("tpm2_dictionarylockout --clear-lockout"),
        "{message}"
    );

    swtpm.run("tpm2_dictionarylockout", &["--clear-lockout"]);
    let signer = TpmSigner::new(
        Box::new(swtpm.address()),
        persistent(KEY),
        right,
        certificate,
        Vec::new(),
    )
    .unwrap();
    ra_signer::conformance::check(&signer).unwrap();
    assert_no_transients(&swtpm);
}

#[test]
fn missing_persistent_handle_is_not_found() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let error = TpmSigner::open(
        &swtpm.device(),
        "handle:0x81000999",
        TpmAuth::no_password(),
        unrelated_certificate(Ca::Ec),
        Vec::new(),
    )
    .unwrap_err();
    let tpm = tpm_error(&error).expect("a TPM error");
    assert!(
        matches!(
            tpm,
            TpmError::HandleNotFound {
                handle: 0x8100_0999,
                ..
            }
        ),
        "{tpm:?}"
    );
    assert_eq!(classify(&error), Some(ErrorClass::NotFound));
    let message = tpm.to_string();
    assert!(message.contains("0x81000999"), "{message}");
    let rc = tpm.response_code().unwrap().to_string();
    assert!(rc.starts_with("TPM_RC_HANDLE at handle 1"), "{rc}");
}

#[test]
fn missing_parent_handle_is_not_found() {
    let swtpm = Swtpm::start(Listen::Tcp);
    swtpm.persistent_parent(0x8100_0001, None);
    let (key, public) = swtpm.key_file("child", "EC", &["group:P-256"], None, Some(0x8100_0001));
    let (certificate, _) = swtpm.issue_certificate(&public, Ca::Ec);
    swtpm.run("tpm2_evictcontrol", &["-Q", "-C", "o", "-c", "0x81000001"]);

    let error = TpmSigner::new(
        Box::new(swtpm.address()),
        file(&key),
        TpmAuth::no_password(),
        certificate,
        Vec::new(),
    )
    .unwrap_err();
    let tpm = tpm_error(&error).expect("a TPM error");
    assert!(
        matches!(
            tpm,
            TpmError::HandleNotFound {
                handle: 0x8100_0001,
                ..
            }
        ),
        "{tpm:?}"
    );
    assert_no_transients(&swtpm);
}

#[test]
fn key_file_from_another_tpm_is_rejected() {
    let tpm_a = Swtpm::start(Listen::Tcp);
    let tpm_b = Swtpm::start(Listen::Tcp);
    let (key, public) = tpm_a.key_file("roaming", "RSA", &["bits:2048"], None, None);
    let (certificate, _) = tpm_a.issue_certificate(&public, Ca::Rsa);

    let counting = Counting::new(tpm_b.address());
    let error =
        open_counted(&counting, file(&key), TpmAuth::no_password(), certificate).unwrap_err();
    let tpm = tpm_error(&error).expect("a TPM error");
    assert!(
        matches!(
            tpm,
            TpmError::KeyBlobRejected {
                parent: 0x4000_0001,
                ..
            }
        ),
        "{tpm:?}"
    );
    let message = tpm.to_string();
    assert!(message.contains("another TPM"), "{message}");
    let rc = tpm.response_code().unwrap().to_string();
    assert!(rc.starts_with("TPM_RC_INTEGRITY"), "{rc}");
    assert_eq!(counting.count(common::CC_SIGN), 0);
    // The storage primary key was created before TPM2_Load failed.
    assert_eq!(counting.count(common::CC_CREATE_PRIMARY), 1);
    assert_no_transients(&tpm_b);
}

#[test]
fn missing_device_and_socket_are_named() {
    let error = TpmSigner::open(
        "device:/nonexistent/tpmrm7",
        "handle:0x81000001",
        TpmAuth::no_password(),
        unrelated_certificate(Ca::Ec),
        Vec::new(),
    )
    .unwrap_err();
    let tpm = tpm_error(&error).expect("a TPM error");
    assert!(matches!(tpm, TpmError::DeviceNotFound { .. }), "{tpm:?}");
    assert!(tpm.to_string().contains("/nonexistent/tpmrm7"));
    assert_eq!(classify(&error), Some(ErrorClass::NotFound));

    let error = TpmSigner::open(
        "unix:/nonexistent/swtpm.sock",
        "handle:0x81000001",
        TpmAuth::no_password(),
        unrelated_certificate(Ca::Ec),
        Vec::new(),
    )
    .unwrap_err();
    let tpm = tpm_error(&error).expect("a TPM error");
    assert!(matches!(tpm, TpmError::Connect { .. }), "{tpm:?}");
    assert!(tpm.to_string().contains("unix:/nonexistent/swtpm.sock"));
    assert_eq!(classify(&error), Some(ErrorClass::NotFound));
}

#[test]
fn unsupported_keys_are_rejected_before_signing() {
    let swtpm = Swtpm::start(Listen::Tcp);
    const SIGN_ONLY: &str = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign";
    let cases = [
        (
            "rsa1024",
            None,
            0x8100_0301,
            Ca::Rsa,
            "RSA key of 1024 bits",
        ),
        ("ecc521", None, 0x8100_0302, Ca::Ec, "TPM_ECC_NIST_P521"),
        (
            "ecc384:ecdsa-sha384",
            None,
            0x8100_0303,
            Ca::Ec,
            "fixes the signing scheme ECDSA with SHA-384",
        ),
        (
            "rsa2048:rsapss-sha256:null",
            Some(SIGN_ONLY),
            0x8100_0304,
            Ca::Rsa,
            "fixes the signing scheme RSAPSS with SHA-256",
        ),
        (
            "ecc256:ecdsa-sha256:null",
            Some("fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"),
            0x8100_0305,
            Ca::Ec,
            "restricted signing keys",
        ),
        (
            "rsa2048",
            Some("fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt"),
            0x8100_0306,
            Ca::Rsa,
            "sign attribute is clear",
        ),
    ];
    for (algorithm, attributes, handle, ca, needle) in cases {
        swtpm.persistent_key_with_attributes(algorithm, handle, None, attributes);
        let counting = Counting::new(swtpm.address());
        let error = open_counted(
            &counting,
            persistent(handle),
            TpmAuth::no_password(),
            unrelated_certificate(ca),
        )
        .unwrap_err();
        let tpm = tpm_error(&error).unwrap_or_else(|| panic!("{algorithm}: {error:?}"));
        assert!(
            matches!(tpm, TpmError::UnsupportedKey { .. }),
            "{algorithm}: {tpm:?}"
        );
        let message = tpm.to_string();
        assert!(message.contains(needle), "{algorithm}: {message}");
        assert_eq!(classify(&error), Some(ErrorClass::Other));
        assert_eq!(counting.count(common::CC_SIGN), 0, "{algorithm}");
    }
    assert_no_transients(&swtpm);
}

#[test]
fn other_certificate_is_a_mismatch_without_signing() {
    let swtpm = Swtpm::start(Listen::Tcp);
    swtpm.persistent_key("ecc256", KEY, None);
    let counting = Counting::new(swtpm.address());
    let error = open_counted(
        &counting,
        persistent(KEY),
        TpmAuth::no_password(),
        unrelated_certificate(Ca::Ec),
    )
    .unwrap_err();
    assert!(
        matches!(error, ra_signer::Error::KeyMismatch { .. }),
        "{error:?}"
    );
    assert_eq!(counting.count(common::CC_SIGN), 0);
}

/// A connector whose transport returns `warning` itself for the first `busy` TPM2_Sign
/// commands, without sending them, and forwards everything else. A TPM returns
/// TPM_RC_YIELDED and TPM_RC_TESTING only under load or during self tests, so the test
/// injects the warnings.
#[derive(Debug, Clone)]
struct Busy {
    inner: TpmAddress,
    warning: u32,
    busy: usize,
    injected: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct BusyTransport {
    inner: Box<dyn Transport>,
    warning: u32,
    busy: usize,
    injected: Arc<AtomicUsize>,
}

impl Transport for BusyTransport {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        let cc = u32::from_be_bytes(command[6..10].try_into().unwrap());
        if cc == common::CC_SIGN && self.injected.load(Ordering::SeqCst) < self.busy {
            self.injected.fetch_add(1, Ordering::SeqCst);
            let mut response = vec![0x80, 0x01, 0, 0, 0, 10];
            response.extend_from_slice(&self.warning.to_be_bytes());
            return Ok(response);
        }
        self.inner.transact(command)
    }
}

impl Connect for Busy {
    fn connect(&self) -> Result<Box<dyn Transport>, TpmError> {
        Ok(Box::new(BusyTransport {
            inner: self.inner.connect()?,
            warning: self.warning,
            busy: self.busy,
            injected: self.injected.clone(),
        }))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn tpm_warnings_are_retried_then_reported() {
    let swtpm = Swtpm::start(Listen::Tcp);
    let public = swtpm.persistent_key("ecc256", KEY, None);
    let (certificate, _) = swtpm.issue_certificate(&public, Ca::Ec);

    for warning in [0x922, 0x908, 0x90A] {
        let busy = Busy {
            inner: swtpm.address(),
            warning,
            busy: 3,
            injected: Arc::default(),
        };
        let signer = TpmSigner::new(
            Box::new(busy.clone()),
            persistent(KEY),
            TpmAuth::no_password(),
            certificate.clone(),
            Vec::new(),
        )
        .unwrap_or_else(|e| panic!("0x{warning:x}: {e:?}"));
        assert_eq!(busy.injected.load(Ordering::SeqCst), 3, "0x{warning:x}");
        ra_signer::conformance::check(&signer).unwrap();
    }

    let always_busy = Busy {
        inner: swtpm.address(),
        warning: 0x922,
        busy: usize::MAX,
        injected: Arc::default(),
    };
    let error = TpmSigner::new(
        Box::new(always_busy.clone()),
        persistent(KEY),
        TpmAuth::no_password(),
        certificate,
        Vec::new(),
    )
    .unwrap_err();
    let tpm = tpm_error(&error).expect("a TPM error");
    assert!(
        matches!(tpm, TpmError::RetriesExhausted { attempts: 8, .. }),
        "{tpm:?}"
    );
    assert_eq!(classify(&error), Some(ErrorClass::Transient));
    assert_eq!(always_busy.injected.load(Ordering::SeqCst), 8);
    assert!(std::error::Error::source(tpm).is_some());
    assert_no_transients(&swtpm);
}
