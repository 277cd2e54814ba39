//! Opening the TPM 2.0 signer from the command line.

use std::path::Path;

use ra_signer::Signer;
use ra_signer_tpm::{TpmAuth, TpmSigner};
use zeroize::Zeroizing;

use crate::cli::{Options, required};
use crate::error::Error;

/// Environment variable that may hold the key password.
pub const KEY_PASSWORD_VARIABLE: &str = "RA_AGENT_TPM_KEY_PASSWORD";

/// Returns whether `--private-key` names a TPM key: `handle:...` or a TSS2 key file.
pub fn is_tpm_key(private_key: &str) -> bool {
    ra_signer_tpm::is_tpm_key(private_key)
}

/// Opens the TPM signer for the certificate file and the TPM key the options name.
pub fn open(options: &Options) -> Result<Box<dyn Signer>, Error> {
    let certificate = required(&options.certificate, "certificate")?;
    let key = required(&options.private_key, "private-key")?;
    let mut certs = ra_signer::read_certificates(Path::new(certificate))?;
    let leaf = certs.remove(0);
    if let Some(path) = &options.intermediates {
        certs.extend(ra_signer::read_certificates(path)?);
    }
    let chain = ra_signer::build_chain(&leaf, &certs)
        .into_iter()
        .map(ra_signer::Certificate::into_der)
        .collect();
    let device = options
        .tpm_device
        .clone()
        .or_else(|| std::env::var("TPM_DEVICE").ok())
        .unwrap_or_default();
    let signer = TpmSigner::open(&device, key, auth(options)?, leaf, chain)?;
    log::info!(
        "using TPM key {key} on {}",
        if device.is_empty() {
            ra_signer_tpm::DEFAULT_DEVICE
        } else {
            &device
        }
    );
    Ok(Box::new(signer))
}

fn auth(options: &Options) -> Result<TpmAuth, Error> {
    let mut auth = TpmAuth::no_password();
    let key_password = match (&options.tpm_key_password, &options.tpm_key_password_file) {
        _ if options.no_tpm_key_password => None,
        (Some(secret), _) => Some(secret.0.clone()),
        (None, Some(path)) => Some(read_password(path, "--tpm-key-password-file")?),
        (None, None) => std::env::var(KEY_PASSWORD_VARIABLE)
            .ok()
            .map(Zeroizing::new),
    };
    if let Some(password) = key_password {
        auth = auth.with_key_password(password.as_bytes().to_vec());
    }
    if let Some(path) = &options.tpm_parent_password_file {
        let password = read_password(path, "--tpm-parent-password-file")?;
        auth = auth.with_parent_password(password.as_bytes().to_vec());
    }
    if let Some(path) = &options.tpm_hierarchy_password_file {
        let password = read_password(path, "--tpm-hierarchy-password-file")?;
        auth = auth.with_hierarchy_password(password.as_bytes().to_vec());
    }
    Ok(auth)
}

/// Reads a password file; one trailing newline is not part of the password.
fn read_password(path: &Path, option: &str) -> Result<Zeroizing<String>, Error> {
    let mut text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read {option} {}: {e}", path.display())))?,
    );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
