//! Opening the PKCS#11 signer from the command line.

use std::path::Path;

use ra_signer::Signer;
use ra_signer_pkcs11::uri::Pkcs11Uri;
use ra_signer_pkcs11::{ErrorKind, Pkcs11Config, Pkcs11Signer};
use zeroize::Zeroizing;

use crate::cli::{Options, required};
use crate::error::Error;

/// Environment variable that may hold the user PIN when no URI names one.
pub const PIN_VARIABLE: &str = "RA_AGENT_PKCS11_PIN";

/// Opens the token signer. The certificate is a `pkcs11:` URI or a file whose private key
/// is on a token. The key URI is optional when the certificate is on the token.
pub fn open(options: &Options) -> Result<Box<dyn Signer>, Error> {
    let certificate = required(&options.certificate, "certificate")?;
    let key_uri = match options.private_key.as_deref() {
        Some(key) if key.starts_with("pkcs11:") => Some(parse_uri(key, "--private-key")?),
        Some(key) => {
            return Err(Error::Usage(format!(
                "--private-key {key:?} is a file but --certificate is a pkcs11: URI; give the \
                 key as a pkcs11: URI too, or leave --private-key out to use the key with the \
                 certificate's CKA_ID"
            )));
        }
        None => None,
    };

    let mut config = if certificate.starts_with("pkcs11:") {
        let config = Pkcs11Config::new(parse_uri(certificate, "--certificate")?);
        match key_uri.clone() {
            Some(uri) => config.with_private_key(uri),
            None => config,
        }
    } else {
        let mut certs = ra_signer::read_certificates(Path::new(certificate))?;
        let leaf = certs.remove(0);
        let key = key_uri.clone().ok_or_else(|| {
            Error::Usage("missing --private-key: a pkcs11: URI naming the key".into())
        })?;
        Pkcs11Config::with_certificate_der(leaf.into_der(), key)
            .with_intermediates(certs.into_iter().map(|c| c.into_der()).collect())
    };

    if let Some(path) = &options.intermediates {
        let extra = ra_signer::read_certificates(path)?;
        config = config.with_intermediates(extra.into_iter().map(|c| c.into_der()).collect());
    }
    if let Some(module) = &options.pkcs11_lib {
        config = config.with_module_path(module);
    }
    let uri_has_pin = [Some(certificate), options.private_key.as_deref()]
        .into_iter()
        .flatten()
        .any(|u| u.contains("pin-value=") || u.contains("pin-source="));
    if !uri_has_pin && let Some(pin) = std::env::var_os(PIN_VARIABLE) {
        let pin = Zeroizing::new(pin.to_string_lossy().into_owned());
        config = config.with_pin(pin);
    }
    config = config.with_reuse_pin(options.reuse_pin);

    let signer = Pkcs11Signer::open(config).map_err(classify)?;
    if let Some(token) = signer.token() {
        log::info!("using PKCS#11 {token}");
    }
    Ok(Box::new(signer))
}

fn parse_uri(text: &str, option: &str) -> Result<Pkcs11Uri, Error> {
    Pkcs11Uri::parse(text)
        .map_err(|e| Error::Usage(format!("invalid {option}: {}", crate::error::report(&e))))
}

/// Configuration mistakes exit as usage errors; token, PIN and device failures as signer
/// errors.
fn classify(error: ra_signer_pkcs11::Error) -> Error {
    match error.kind() {
        ErrorKind::Config => Error::Usage(crate::error::report(&error)),
        _ => Error::Signer(error.into()),
    }
}
