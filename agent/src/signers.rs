//! Choosing and opening the signer backend that `--certificate` and `--private-key` name.

use std::path::Path;

use ra_signer::{Certificate, Signer};
use time::OffsetDateTime;

use crate::cli::{Options, required};
use crate::error::Error;

/// An opened signer and its parsed end-entity certificate.
#[derive(Debug)]
pub struct Loaded {
    pub signer: Box<dyn Signer>,
    pub certificate: Certificate,
}

/// Opens the backend the options name: a `pkcs11:` URI selects the PKCS#11 token,
/// `handle:...` or a TSS2 key file the TPM, anything else is a file key.
pub fn open(options: &Options) -> Result<Loaded, Error> {
    let certificate = required(&options.certificate, "certificate")?;
    let is_pkcs11 = |v: &str| v.starts_with("pkcs11:");
    let signer: Box<dyn Signer> =
        if is_pkcs11(certificate) || options.private_key.as_deref().is_some_and(is_pkcs11) {
            open_pkcs11(options)?
        } else if is_tpm_key(options) {
            open_tpm(options)?
        } else {
            open_file(options, certificate)?
        };
    let certificate = Certificate::from_der(signer.certificate().to_vec(), certificate)?;
    check_validity(&certificate, OffsetDateTime::now_utc().unix_timestamp())?;
    log::debug!(
        "signer ready: {:?}, subject {}, serial {}, {} chain certificates",
        signer.algorithm(),
        certificate.subject(),
        certificate.serial_decimal(),
        signer.chain().len()
    );
    Ok(Loaded {
        signer,
        certificate,
    })
}

/// Fails for an expired certificate (the service would reject it) and warns for one that
/// is not valid yet (more often the device clock is wrong than the certificate).
pub fn check_validity(certificate: &Certificate, now: i64) -> Result<(), Error> {
    let format = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(crate::credentials::format_expiration)
            .unwrap_or_else(|_| t.to_string())
    };
    if now > certificate.not_after() {
        return Err(Error::Usage(format!(
            "certificate {} expired at {}; install a renewed certificate",
            certificate.subject(),
            format(certificate.not_after())
        )));
    }
    if now < certificate.not_before() {
        log::warn!(
            "certificate {} is not valid until {}; if the device clock is wrong, set it \
             (the service will reject the request until then)",
            certificate.subject(),
            format(certificate.not_before())
        );
    }
    Ok(())
}

#[cfg(feature = "file-key")]
fn open_file(options: &Options, certificate: &str) -> Result<Box<dyn Signer>, Error> {
    let key = required(&options.private_key, "private-key")?;
    let signer = ra_signer::file::FileSigner::open(
        Path::new(certificate),
        Path::new(key),
        options.intermediates.as_deref(),
    )?;
    Ok(Box::new(signer))
}

#[cfg(not(feature = "file-key"))]
fn open_file(_options: &Options, certificate: &str) -> Result<Box<dyn Signer>, Error> {
    let _ = Path::new(certificate);
    Err(Error::Usage(format!(
        "{certificate} is a file, but this build has no file-key signer; \
         rebuild with --features file-key or use a pkcs11: URI"
    )))
}

#[cfg(feature = "tpm")]
fn is_tpm_key(options: &Options) -> bool {
    options
        .private_key
        .as_deref()
        .is_some_and(crate::tpm::is_tpm_key)
}

#[cfg(not(feature = "tpm"))]
fn is_tpm_key(options: &Options) -> bool {
    options
        .private_key
        .as_deref()
        .is_some_and(|key| key.starts_with("handle:"))
}

#[cfg(feature = "tpm")]
fn open_tpm(options: &Options) -> Result<Box<dyn Signer>, Error> {
    crate::tpm::open(options)
}

#[cfg(not(feature = "tpm"))]
fn open_tpm(_options: &Options) -> Result<Box<dyn Signer>, Error> {
    Err(Error::Usage(
        "a TPM key (handle:...) was given, but this build has no TPM support; \
         rebuild with --features tpm"
            .into(),
    ))
}

#[cfg(feature = "pkcs11")]
fn open_pkcs11(options: &Options) -> Result<Box<dyn Signer>, Error> {
    crate::pkcs11::open(options)
}

#[cfg(not(feature = "pkcs11"))]
fn open_pkcs11(_options: &Options) -> Result<Box<dyn Signer>, Error> {
    Err(Error::Usage(
        "a pkcs11: URI was given, but this build has no PKCS#11 support (a fully static \
         binary cannot load PKCS#11 modules); use a dynamically linked build"
            .into(),
    ))
}
