//! Shared pieces of the end-to-end tests: a temporary directory, the verifying endpoint
//! and a way to run the `ra-agent` binary against it.
#![allow(dead_code, unused_imports, clippy::unwrap_used)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use mock_rolesanywhere::{
    Config, EC_TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, RSA_TRUST_ANCHOR_ARN, Server,
};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ra-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn pki(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/pki")
        .join(relative)
}

pub fn start_server() -> Server {
    Server::start(Config::test_pki().unwrap()).unwrap()
}

/// Returns the identity and endpoint flags for `server`, with the RSA or EC trust anchor.
pub fn identity_args(server: &Server, anchor: &str) -> Vec<String> {
    vec![
        "--trust-anchor-arn".into(),
        anchor.into(),
        "--profile-arn".into(),
        PROFILE_ARN.into(),
        "--role-arn".into(),
        ROLE_ARN.into(),
        "--endpoint".into(),
        server.url(),
        "--ca-bundle".into(),
        server.ca_pem_path().unwrap().display().to_string(),
    ]
}

/// Runs `ra-agent` with `args`, the credentials file at `credentials` and extra `env`.
pub fn run(args: &[String], credentials: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ra-agent"));
    command
        .args(args)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Parses credential-process output and checks it against what the server issued last.
pub fn assert_process_json(output: &Output, server: &Server) {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "one JSON line: {stdout}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let issued = server.issued().pop().unwrap();
    assert_eq!(json["Version"], 1);
    assert_eq!(json["AccessKeyId"], issued.access_key_id.as_str());
    assert_eq!(json["SecretAccessKey"], issued.secret_access_key.as_str());
    assert_eq!(json["SessionToken"], issued.session_token.as_str());
    let expiration = json["Expiration"].as_str().unwrap();
    assert_eq!(expiration.len(), 20, "{expiration}");
    assert!(expiration.ends_with('Z'), "{expiration}");
}

/// Checks that the profile in the credentials file contains what the server issued last.
pub fn assert_profile_written(file: &Path, profile: &str, server: &Server) {
    let text = std::fs::read_to_string(file).unwrap();
    let issued = server.issued().pop().unwrap();
    let section = format!(
        "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
        issued.access_key_id, issued.secret_access_key, issued.session_token
    );
    assert!(
        text.contains(&section),
        "profile {profile} not written as expected:\n{text}"
    );
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(file).unwrap().mode() & 0o777, 0o600);
}
