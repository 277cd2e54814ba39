//! Test harness: every token test runs in its own child process with its own SoftHSM2
//! token, made by `tests/softhsm/setup-token.sh`.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process at `C_Initialize`, and login state is
//! shared by all sessions of a process. A child process per test gives each test its own
//! token directory and login state without changing the environment of a running
//! process (which would need `unsafe` in this edition).
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use ra_signer_pkcs11::{Pkcs11Config, Pkcs11Uri};
use zeroize::Zeroizing;

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const USER_PIN: &str = "1234";
pub const SO_PIN: &str = "5678";
pub const TOKEN_LABEL: &str = "ra-test";

/// Set in the child process to the token directory the parent created.
const TOKEN_DIR_ENV: &str = "RA_PKCS11_TEST_TOKEN_DIR";

/// A token directory made by `setup-token.sh`.
#[derive(Debug)]
pub struct TokenDir {
    path: PathBuf,
}

impl TokenDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the pkcs11-spy log, written when a test loads the spy module.
    pub fn spy_log(&self) -> String {
        std::fs::read_to_string(self.path.join("spy.log")).unwrap_or_default()
    }

    /// Counts the calls of one PKCS#11 function in the spy log, for example `C_Login`.
    pub fn spy_calls(&self, function: &str) -> usize {
        self.spy_log()
            .lines()
            .filter(|line| {
                line.split_once(": ")
                    .is_some_and(|(n, f)| n.bytes().all(|b| b.is_ascii_digit()) && f == function)
            })
            .count()
    }

    /// Returns the return codes the spy logged for `function`, in call order.
    pub fn spy_results(&self, function: &str) -> Vec<String> {
        let mut results = Vec::new();
        let mut inside = false;
        for line in self.spy_log().lines() {
            if let Some((n, f)) = line.split_once(": ")
                && n.bytes().all(|b| b.is_ascii_digit())
                && f.starts_with("C_")
            {
                inside = f == function;
            }
            if inside && let Some(code) = line.strip_prefix("Returned:") {
                results.push(code.split_whitespace().nth(1).unwrap_or("").to_owned());
            }
        }
        results
    }
}

/// Runs `body` in a child process that has a fresh token. `name` must be the name of the
/// calling test, so the child runs exactly that test.
pub fn run_isolated(name: &str, body: impl FnOnce(&TokenDir)) {
    if let Some(dir) = std::env::var_os(TOKEN_DIR_ENV) {
        init_logger();
        body(&TokenDir { path: dir.into() });
        return;
    }

    let dir = TempDir::new(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/softhsm/setup-token.sh");
    let setup = Command::new(&script).arg(dir.path()).output().unwrap();
    assert!(
        setup.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&setup.stdout),
        String::from_utf8_lossy(&setup.stderr)
    );

    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(TOKEN_DIR_ENV, dir.path())
        .env("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"))
        .env("PKCS11SPY", SOFTHSM_MODULE)
        .env("PKCS11SPY_OUTPUT", dir.path().join("spy.log"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        output.status.success(),
        "test {name} failed in its child process"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child process ran no test named {name}"
    );
}

/// Declares a test that runs in its own process with a fresh token.
#[macro_export]
macro_rules! token_test {
    ($(#[$attr:meta])* $name:ident, |$dir:ident| $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            common::run_isolated(stringify!($name), |$dir: &common::TokenDir| $body);
        }
    };
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("ra-pkcs11-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Log lines captured in this process, for tests that check what gets logged.
pub fn captured_logs() -> Vec<String> {
    LOGGER.lines.lock().unwrap().clone()
}

struct CapturingLogger {
    lines: Mutex<Vec<String>>,
}

static LOGGER: CapturingLogger = CapturingLogger {
    lines: Mutex::new(Vec::new()),
};

impl log::Log for CapturingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        eprintln!("{line}");
        self.lines.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

fn init_logger() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Finds the OpenSC pkcs11-spy module, which logs every PKCS#11 call to
/// `PKCS11SPY_OUTPUT` and forwards it to the module in `PKCS11SPY`.
pub fn spy_module() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
        "/usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so",
        "/usr/lib64/pkcs11/pkcs11-spy.so",
        "/usr/lib/pkcs11/pkcs11-spy.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("pkcs11-spy.so not found in {candidates:?}; install opensc"))
}

pub fn uri(text: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(text).unwrap()
}

/// Builds a configuration for the certificate `cert_uri` on SoftHSM with the user PIN.
pub fn config(cert_uri: &str) -> Pkcs11Config {
    Pkcs11Config::new(uri(cert_uri))
        .with_module_path(SOFTHSM_MODULE)
        .with_pin(Zeroizing::new(USER_PIN.to_owned()))
}

pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/pki")
}

/// Reads the DER certificates of a PEM file.
pub fn pem_certificates(path: &Path) -> Vec<Vec<u8>> {
    ra_signer::read_certificates(path)
        .unwrap()
        .into_iter()
        .map(ra_signer::Certificate::into_der)
        .collect()
}

/// Runs a command with the test's `SOFTHSM2_CONF` and panics with its output on failure.
pub fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
