//! Settings for [`crate::Pkcs11Signer::open`] (the object URIs, the module, the PIN and
//! extra intermediates) and the rules that resolve each one.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::Error;
use crate::uri::{ObjectType, Pkcs11Uri};

/// The source of the end-entity certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CertificateSource {
    /// A certificate object on a token, named by a URI.
    Token(Box<Pkcs11Uri>),
    /// A DER certificate that the caller read elsewhere, for example from a file.
    Der(Vec<u8>),
}

/// Settings for [`crate::Pkcs11Signer::open`], built with [`Pkcs11Config::new`] or
/// [`Pkcs11Config::with_certificate_der`] and the `with_*` setters.
#[derive(Clone)]
pub struct Pkcs11Config {
    pub(crate) certificate: CertificateSource,
    pub(crate) private_key: Option<Pkcs11Uri>,
    pub(crate) module_path: Option<PathBuf>,
    pub(crate) pin: Option<Zeroizing<String>>,
    pub(crate) reuse_pin: bool,
    pub(crate) intermediates: Vec<Vec<u8>>,
}

impl Pkcs11Config {
    /// Starts a configuration for the certificate object `certificate` names. Without
    /// [`Pkcs11Config::with_private_key`], the key is looked up on the same token by the
    /// certificate's `CKA_ID`, and by its `CKA_LABEL` when no key has that ID.
    pub fn new(certificate: Pkcs11Uri) -> Self {
        Pkcs11Config {
            certificate: CertificateSource::Token(Box::new(certificate)),
            private_key: None,
            module_path: None,
            pin: None,
            reuse_pin: false,
            intermediates: Vec::new(),
        }
    }

    /// Starts a configuration for a certificate given as DER, with its private key on a
    /// token. Chain candidates then come from the key's token.
    pub fn with_certificate_der(certificate: Vec<u8>, private_key: Pkcs11Uri) -> Self {
        Pkcs11Config {
            certificate: CertificateSource::Der(certificate),
            private_key: Some(private_key),
            module_path: None,
            pin: None,
            reuse_pin: false,
            intermediates: Vec::new(),
        }
    }

    /// Names the private key object. Its token attributes, when present, select the key's
    /// token; otherwise the key is on the certificate's token.
    pub fn with_private_key(mut self, uri: Pkcs11Uri) -> Self {
        self.private_key = Some(uri);
        self
    }

    /// Sets the PKCS#11 module to load when no URI has `module-path` or `module-name`.
    /// Without it the p11-kit proxy module is used.
    pub fn with_module_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.module_path = Some(path.into());
        self
    }

    /// Sets the user PIN. A URI that also carries `pin-value` or `pin-source` is a
    /// configuration error, so the PIN has one source.
    pub fn with_pin(mut self, pin: Zeroizing<String>) -> Self {
        self.pin = Some(pin);
        self
    }

    /// Allows logging in again with the user PIN before each signature when the key has
    /// `CKA_ALWAYS_AUTHENTICATE`. Without it such keys are rejected at open.
    pub fn with_reuse_pin(mut self, reuse: bool) -> Self {
        self.reuse_pin = reuse;
        self
    }

    /// Adds intermediate certificates (DER, any order) as chain candidates. They are
    /// tried before the certificates on the token. Repeated calls add to the list.
    pub fn with_intermediates(mut self, certificates: Vec<Vec<u8>>) -> Self {
        self.intermediates.extend(certificates);
        self
    }

    /// Returns the certificate source.
    pub fn certificate_source(&self) -> &CertificateSource {
        &self.certificate
    }

    /// Names the certificate in messages: its URI with the PIN redacted.
    pub(crate) fn certificate_name(&self) -> String {
        match &self.certificate {
            CertificateSource::Token(uri) => uri.to_string(),
            CertificateSource::Der(_) => "given by the caller".into(),
        }
    }

    /// Checks that the URIs name the right object classes.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let CertificateSource::Token(uri) = &self.certificate
            && let Some(kind) = uri.object_type()
            && kind != ObjectType::Certificate
        {
            return Err(Error::InvalidConfig(format!(
                "the certificate URI {uri} names type {kind:?}; use type=cert or leave type out"
            )));
        }
        if let Some(uri) = &self.private_key
            && let Some(kind) = uri.object_type()
            && kind != ObjectType::PrivateKey
        {
            return Err(Error::InvalidConfig(format!(
                "the private key URI {uri} names type {kind:?}; use type=private or leave \
                 type out"
            )));
        }
        Ok(())
    }

    /// Returns the URIs in the order their query attributes take precedence: the key URI
    /// first, then the certificate URI.
    fn uris(&self) -> impl Iterator<Item = &Pkcs11Uri> {
        let certificate = match &self.certificate {
            CertificateSource::Token(uri) => Some(uri.as_ref()),
            CertificateSource::Der(_) => None,
        };
        self.private_key.iter().chain(certificate)
    }

    /// Reads the PIN: from the key URI, else the certificate URI, else the caller.
    pub(crate) fn resolve_pin(&self) -> Result<Option<Zeroizing<String>>, Error> {
        let mut from_uri = None;
        for uri in self.uris() {
            if let Some(pin) = uri.read_pin()? {
                from_uri = Some(pin);
                break;
            }
        }
        match (from_uri, &self.pin) {
            (Some(_), Some(_)) => Err(Error::InvalidConfig(
                "a PIN is given both in the URI (pin-value or pin-source) and by the caller; \
                 give it one way"
                    .into(),
            )),
            (Some(pin), None) => Ok(Some(pin)),
            (None, pin) => Ok(pin.clone()),
        }
    }

    /// Finds the module to load: `module-path` from a URI, then `module-name` from a URI,
    /// then the configured path, then the p11-kit proxy in the usual library directories.
    pub(crate) fn resolve_module(&self) -> Result<PathBuf, Error> {
        let mut chosen: Option<&Path> = None;
        for uri in self.uris() {
            let Some(path) = uri.module_path() else {
                continue;
            };
            match chosen {
                Some(previous) if previous != path => {
                    return Err(Error::InvalidConfig(format!(
                        "the certificate and key URIs name different modules ({} and {}); \
                         one signer loads one module",
                        previous.display(),
                        path.display()
                    )));
                }
                _ => chosen = Some(path),
            }
        }
        if let Some(path) = chosen {
            return Ok(path.to_owned());
        }
        if let Some(name) = self.uris().find_map(|uri| uri.module_name()) {
            return find_first(&module_name_candidates(name));
        }
        if let Some(path) = &self.module_path {
            return Ok(path.clone());
        }
        find_first(&proxy_candidates())
    }
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("certificate", &self.certificate_name())
            .field("private_key", &self.private_key)
            .field("module_path", &self.module_path)
            .field("pin", &self.pin.as_ref().map(|_| "REDACTED"))
            .field("reuse_pin", &self.reuse_pin)
            .field("intermediates", &self.intermediates.len())
            .finish()
    }
}

fn find_first(candidates: &[PathBuf]) -> Result<PathBuf, Error> {
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| Error::ModuleNotFound {
            tried: candidates.to_vec(),
        })
}

/// Returns the Debian multiarch directory name for the architecture this binary runs on.
fn multiarch() -> Option<&'static str> {
    Some(match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "x86" => "i386-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => return None,
    })
}

fn library_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(triple) = multiarch() {
        dirs.push(PathBuf::from(format!("/usr/lib/{triple}")));
    }
    dirs.push(PathBuf::from("/usr/lib64"));
    dirs.push(PathBuf::from("/usr/lib"));
    dirs
}

fn proxy_candidates() -> Vec<PathBuf> {
    library_dirs()
        .into_iter()
        .map(|dir| dir.join("p11-kit-proxy.so"))
        .collect()
}

/// Paths tried for `module-name=NAME`: `NAME.so` and `libNAME.so` in the `pkcs11`
/// subdirectory and the directory itself of each library directory.
fn module_name_candidates(name: &str) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    for dir in library_dirs() {
        for sub in [dir.join("pkcs11"), dir] {
            candidates.push(sub.join(format!("{name}.so")));
            candidates.push(sub.join(format!("lib{name}.so")));
        }
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(text).unwrap()
    }

    #[test]
    fn module_path_in_uri_wins() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t?module-path=/opt/a.so"))
            .with_module_path("/opt/b.so");
        assert_eq!(config.resolve_module().unwrap(), PathBuf::from("/opt/a.so"));
    }

    #[test]
    fn module_path_option_comes_next() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t")).with_module_path("/opt/b.so");
        assert_eq!(config.resolve_module().unwrap(), PathBuf::from("/opt/b.so"));
    }

    #[test]
    fn key_uri_module_path_counts() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t"))
            .with_private_key(uri("pkcs11:token=t?module-path=/opt/k.so"));
        assert_eq!(config.resolve_module().unwrap(), PathBuf::from("/opt/k.so"));
    }

    #[test]
    fn conflicting_module_paths_are_rejected() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t?module-path=/opt/a.so"))
            .with_private_key(uri("pkcs11:token=t?module-path=/opt/k.so"));
        assert!(matches!(
            config.resolve_module(),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn default_module_is_the_p11_kit_proxy() {
        let candidates = proxy_candidates();
        assert!(candidates.iter().all(|p| p.ends_with("p11-kit-proxy.so")));
        assert_eq!(
            candidates.last().map(PathBuf::as_path),
            Some(Path::new("/usr/lib/p11-kit-proxy.so"))
        );
        let config = Pkcs11Config::new(uri("pkcs11:token=t"));
        match config.resolve_module() {
            Ok(path) => assert!(candidates.contains(&path)),
            Err(Error::ModuleNotFound { tried }) => assert_eq!(tried, candidates),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_module_name_lists_paths() {
        let config = Pkcs11Config::new(uri("pkcs11:?module-name=ra-no-such-module"));
        match config.resolve_module() {
            Err(Error::ModuleNotFound { tried }) => {
                assert!(tried.contains(&PathBuf::from("/usr/lib/libra-no-such-module.so")));
                assert!(tried.contains(&PathBuf::from("/usr/lib/pkcs11/ra-no-such-module.so")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pin_from_uri_and_caller_conflict() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t?pin-value=1"))
            .with_pin(Zeroizing::new("2".into()));
        assert!(matches!(config.resolve_pin(), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn pin_sources_in_order() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t?pin-value=1"))
            .with_private_key(uri("pkcs11:token=t?pin-value=2"));
        assert_eq!(config.resolve_pin().unwrap().unwrap().as_str(), "2");
        let config = Pkcs11Config::new(uri("pkcs11:token=t?pin-value=1"))
            .with_private_key(uri("pkcs11:token=t"));
        assert_eq!(config.resolve_pin().unwrap().unwrap().as_str(), "1");
        let config = Pkcs11Config::new(uri("pkcs11:token=t")).with_pin(Zeroizing::new("3".into()));
        assert_eq!(config.resolve_pin().unwrap().unwrap().as_str(), "3");
        let config = Pkcs11Config::new(uri("pkcs11:token=t"));
        assert!(config.resolve_pin().unwrap().is_none());
    }

    #[test]
    fn wrong_object_types_are_rejected() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t;type=private"));
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
        let config = Pkcs11Config::new(uri("pkcs11:token=t"))
            .with_private_key(uri("pkcs11:token=t;type=cert"));
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
        let config = Pkcs11Config::new(uri("pkcs11:token=t;type=cert"))
            .with_private_key(uri("pkcs11:token=t;type=private"));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn intermediates_accumulate() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t"))
            .with_intermediates(vec![vec![1]])
            .with_intermediates(vec![vec![2], vec![3]]);
        assert_eq!(config.intermediates, [vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn debug_redacts_the_pin() {
        let config = Pkcs11Config::new(uri("pkcs11:token=t?pin-value=s3cret"))
            .with_pin(Zeroizing::new("0therpin".into()));
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("0therpin"), "{text}");
    }
}
