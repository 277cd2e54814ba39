//! Server configuration and the test PKI defaults.

use std::io;
use std::path::{Path, PathBuf};

/// The trust anchor whose root is `pki/rsa/root.pem`.
pub const RSA_TRUST_ANCHOR_ARN: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/11111111-2222-3333-4444-555555555555";
/// The trust anchor whose root is `pki/ec/root.pem`.
pub const EC_TRUST_ANCHOR_ARN: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/22222222-3333-4444-5555-666666666666";
/// The profile ARN the interoperability vectors use.
pub const PROFILE_ARN: &str =
    "arn:aws:rolesanywhere:us-east-1:123456789012:profile/66666666-7777-8888-9999-000000000000";
/// The role ARN the interoperability vectors use.
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ExampleRole";
/// The region of the test PKI configuration.
pub const REGION: &str = "us-east-1";

/// Returns the path of `relative` inside the test PKI, `tests/vectors/pki`, such as
/// `pki_path("rsa/leaf.pem")`. The path is fixed at build time from the crate's
/// source directory.
pub fn pki_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vectors/pki")
        .join(relative)
}

/// What a [`crate::Server`] accepts and how it presents itself.
#[derive(Clone)]
pub struct Config {
    /// The region the credential scope must name, such as `us-east-1`.
    pub region: String,
    /// Trust anchors as (ARN, DER root certificate). A request names one in
    /// `trustAnchorArn`, and its leaf must chain to that anchor's root.
    pub trust_anchors: Vec<(String, Vec<u8>)>,
    /// Profiles as (profile ARN, role ARNs it may assume). `None` accepts any
    /// well-formed profile and role; with `Some`, an unknown profile gets a 404
    /// `ResourceNotFoundException` and a role not listed gets a 403.
    pub profiles: Option<Vec<(String, Vec<String>)>>,
    /// The TLS server certificate chain, PEM.
    pub tls_cert_pem: String,
    /// The TLS server private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_pem: String,
    /// The CA file a client needs to trust the TLS certificate, returned by
    /// [`crate::Server::ca_pem_path`]; `None` when unknown.
    pub tls_ca_pem_path: Option<PathBuf>,
    /// Seconds added to the system clock for every check and timestamp; tests change it
    /// later with [`crate::Server::set_clock_offset`].
    pub clock_offset_secs: i64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let anchors: Vec<&str> = self
            .trust_anchors
            .iter()
            .map(|(arn, _)| arn.as_str())
            .collect();
        f.debug_struct("Config")
            .field("region", &self.region)
            .field("trust_anchors", &anchors)
            .field("profiles", &self.profiles)
            .field("tls_ca_pem_path", &self.tls_ca_pem_path)
            .field("clock_offset_secs", &self.clock_offset_secs)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Creates the configuration of the test PKI in `tests/vectors/pki`: region
    /// `us-east-1`, [`RSA_TRUST_ANCHOR_ARN`] with `rsa/root.pem`, [`EC_TRUST_ANCHOR_ARN`]
    /// with `ec/root.pem`, TLS from `tls/server.pem` and `tls/server.key` (a certificate
    /// for `127.0.0.1` and `localhost` issued by `tls/ca.pem`), any profile and role, and
    /// no clock offset.
    pub fn test_pki() -> io::Result<Config> {
        let mut config = Config {
            region: REGION.into(),
            trust_anchors: vec![
                (
                    RSA_TRUST_ANCHOR_ARN.into(),
                    read_root_der(&pki_path("rsa/root.pem"))?,
                ),
                (
                    EC_TRUST_ANCHOR_ARN.into(),
                    read_root_der(&pki_path("ec/root.pem"))?,
                ),
            ],
            profiles: None,
            tls_cert_pem: String::new(),
            tls_key_pem: String::new(),
            tls_ca_pem_path: Some(pki_path("tls/ca.pem")),
            clock_offset_secs: 0,
        };
        config.read_tls_files(&pki_path("tls/server.pem"), &pki_path("tls/server.key"))?;
        Ok(config)
    }

    /// Reads the TLS certificate chain and private key from PEM files into
    /// `tls_cert_pem` and `tls_key_pem`.
    pub fn read_tls_files(&mut self, cert: &Path, key: &Path) -> io::Result<()> {
        self.tls_cert_pem = read_text(cert)?;
        self.tls_key_pem = read_text(key)?;
        Ok(())
    }
}

/// Reads the first certificate of a PEM or DER file and returns its DER bytes.
pub fn read_root_der(path: &Path) -> io::Result<Vec<u8>> {
    let certificates = ra_signer::read_certificates(path)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    certificates
        .into_iter()
        .next()
        .map(ra_signer::Certificate::into_der)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} contains no certificate", path.display()),
            )
        })
}

fn read_text(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))
}
