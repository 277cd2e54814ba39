use std::fmt;

use crate::rc::ResponseCode;

/// The reaction a [`TpmError`] calls for in the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A password was wrong or missing. Retrying with the same value only brings the
    /// TPM closer to dictionary-attack lockout.
    AuthFailure,
    /// The TPM is in dictionary-attack lockout and refuses authorization.
    Lockout,
    /// The device, socket, persistent handle or key file does not exist.
    NotFound,
    /// The TPM or the connection to it failed in a way that may pass on a later try.
    Transient,
    /// Any other failure: bad configuration, unsupported key, protocol error.
    Other,
}

/// A failure while talking to the TPM or using a TPM key.
#[derive(Debug)]
#[non_exhaustive]
pub enum TpmError {
    /// A `--tpm-device` string could not be parsed.
    InvalidAddress { value: String, reason: String },
    /// The TPM character device does not exist.
    DeviceNotFound { path: String },
    /// The TPM character device exists but this user may not open it.
    PermissionDenied {
        path: String,
        source: std::io::Error,
    },
    /// The TPM device or simulator socket could not be opened.
    Connect {
        address: String,
        source: std::io::Error,
    },
    /// Sending a command or receiving its response failed.
    Io {
        address: String,
        source: std::io::Error,
    },
    /// The TPM sent a response this crate cannot parse, or a command could not be built.
    Protocol {
        command: &'static str,
        reason: String,
    },
    /// The TPM rejected the authorization value (wrong or missing password).
    AuthFailed {
        command: &'static str,
        object: String,
        rc: ResponseCode,
    },
    /// The TPM is in dictionary-attack lockout.
    Lockout {
        command: &'static str,
        rc: ResponseCode,
    },
    /// A persistent handle (the key or its parent) does not exist in the TPM.
    HandleNotFound { handle: u32, rc: ResponseCode },
    /// TPM2_Load rejected a key blob: it was made on another TPM or under another parent.
    KeyBlobRejected { parent: u32, rc: ResponseCode },
    /// A warning such as TPM_RC_RETRY persisted after every retry.
    RetriesExhausted {
        command: &'static str,
        attempts: u32,
        rc: ResponseCode,
    },
    /// The TPM returned an error this crate has no specific variant for.
    Command {
        command: &'static str,
        rc: ResponseCode,
    },
    /// The key type, size, curve or fixed scheme cannot sign for Roles Anywhere.
    UnsupportedKey { detail: String },
    /// A key file could not be read.
    KeyFileIo {
        path: String,
        source: std::io::Error,
    },
    /// A key file is not a valid TSS2 private key.
    InvalidKeyFile { path: String, reason: String },
    /// A key spec given to `--private-key` is neither `handle:` nor a readable file.
    InvalidKeySpec { value: String, reason: String },
    /// A password was given or missing against what the key file declares.
    PasswordPolicy { path: String, reason: String },
}

impl TpmError {
    /// Returns the class of this error, which tells the agent whether to retry.
    pub fn class(&self) -> ErrorClass {
        match self {
            TpmError::AuthFailed { .. } | TpmError::PasswordPolicy { .. } => {
                ErrorClass::AuthFailure
            }
            TpmError::Lockout { .. } => ErrorClass::Lockout,
            TpmError::DeviceNotFound { .. } | TpmError::HandleNotFound { .. } => {
                ErrorClass::NotFound
            }
            TpmError::KeyFileIo { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorClass::NotFound
            }
            TpmError::Connect { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorClass::NotFound
            }
            TpmError::Connect { .. } | TpmError::Io { .. } | TpmError::RetriesExhausted { .. } => {
                ErrorClass::Transient
            }
            // Warnings such as TPM_RC_OBJECT_MEMORY or TPM_RC_NV_RATE: the TPM did not
            // run the command and may accept it later.
            TpmError::Command { rc, .. } if rc.is_warning() => ErrorClass::Transient,
            _ => ErrorClass::Other,
        }
    }

    /// Returns the TPM response code behind this error, if the TPM sent one.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            TpmError::AuthFailed { rc, .. }
            | TpmError::Lockout { rc, .. }
            | TpmError::HandleNotFound { rc, .. }
            | TpmError::KeyBlobRejected { rc, .. }
            | TpmError::RetriesExhausted { rc, .. }
            | TpmError::Command { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmError::InvalidAddress { value, reason } => write!(
                f,
                "invalid TPM device {value:?}: {reason}; use device:/dev/tpmrm0, \
                 unix:/path/to/socket, swtpm:host=HOST,port=PORT or mssim:host=HOST,port=PORT"
            ),
            TpmError::DeviceNotFound { path } => write!(
                f,
                "TPM device {path} not found; check that the TPM is enabled and its driver \
                 loaded, or name another device with --tpm-device"
            ),
            TpmError::PermissionDenied { path, .. } => write!(
                f,
                "permission denied opening TPM device {path}; add the user to the `tss` group \
                 (usermod -aG tss USER) or grant access with a udev rule"
            ),
            TpmError::Connect { address, .. } => write!(f, "cannot connect to TPM {address}"),
            TpmError::Io { address, .. } => write!(f, "TPM {address} I/O failed"),
            TpmError::Protocol { command, reason } => {
                write!(f, "bad TPM message for {command}: {reason}")
            }
            TpmError::AuthFailed {
                command, object, ..
            } => write!(
                f,
                "{command} authorization failed for {object}: wrong or missing password \
                 (not retried, because each failure counts towards dictionary-attack lockout)"
            ),
            TpmError::Lockout { command, .. } => write!(
                f,
                "{command} refused: the TPM is in dictionary-attack lockout; wait for the \
                 lockout recovery time or clear it with \
                 `tpm2_dictionarylockout --clear-lockout -p LOCKOUT_AUTH`"
            ),
            TpmError::HandleNotFound { handle, .. } => write!(
                f,
                "TPM persistent handle 0x{handle:08X} does not exist; list persistent \
                 objects with `tpm2_getcap handles-persistent`"
            ),
            TpmError::KeyBlobRejected { parent, .. } => write!(
                f,
                "TPM rejected the key blob under parent 0x{parent:08X}: it was created on \
                 another TPM, under another parent, or the TPM was cleared since"
            ),
            TpmError::RetriesExhausted {
                command, attempts, ..
            } => write!(f, "{command} still busy after {attempts} attempts"),
            TpmError::Command { command, .. } => write!(f, "{command} failed"),
            TpmError::UnsupportedKey { detail } => write!(f, "unsupported TPM key: {detail}"),
            TpmError::KeyFileIo { path, .. } => write!(f, "cannot read TPM key file {path}"),
            TpmError::InvalidKeyFile { path, reason } => {
                write!(f, "invalid TPM key file {path}: {reason}")
            }
            TpmError::InvalidKeySpec { value, reason } => write!(
                f,
                "invalid TPM key {value:?}: {reason}; use handle:0x81000001 or the path of a \
                 TSS2 PRIVATE KEY file"
            ),
            TpmError::PasswordPolicy { path, reason } => {
                write!(f, "TPM key {path}: {reason}")
            }
        }
    }
}

impl std::error::Error for TpmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TpmError::PermissionDenied { source, .. }
            | TpmError::Connect { source, .. }
            | TpmError::Io { source, .. }
            | TpmError::KeyFileIo { source, .. } => Some(source),
            TpmError::AuthFailed { rc, .. }
            | TpmError::Lockout { rc, .. }
            | TpmError::HandleNotFound { rc, .. }
            | TpmError::KeyBlobRejected { rc, .. }
            | TpmError::RetriesExhausted { rc, .. }
            | TpmError::Command { rc, .. } => Some(rc),
            _ => None,
        }
    }
}

impl From<TpmError> for ra_signer::Error {
    fn from(error: TpmError) -> Self {
        ra_signer::Error::Backend {
            context: "TPM".into(),
            source: Box::new(error),
        }
    }
}

/// Returns the class of a TPM failure wrapped in a [`ra_signer::Error`], or `None` when
/// the error did not come from this crate.
pub fn classify(error: &ra_signer::Error) -> Option<ErrorClass> {
    tpm_error(error).map(TpmError::class)
}

/// Returns the [`TpmError`] inside a [`ra_signer::Error::Backend`], if there is one.
pub fn tpm_error(error: &ra_signer::Error) -> Option<&TpmError> {
    match error {
        ra_signer::Error::Backend { source, .. } => source.downcast_ref::<TpmError>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(rc: u32) -> TpmError {
        TpmError::Command {
            command: "TPM2_Sign",
            rc: ResponseCode(rc),
        }
    }

    #[test]
    fn class_of_each_kind() {
        let not_found = std::io::Error::from(std::io::ErrorKind::NotFound);
        let cases = [
            (command(0x902), ErrorClass::Transient),
            (command(0x101), ErrorClass::Other),
            (
                TpmError::KeyFileIo {
                    path: "k".into(),
                    source: not_found,
                },
                ErrorClass::NotFound,
            ),
            (
                TpmError::Lockout {
                    command: "TPM2_Sign",
                    rc: ResponseCode(0x921),
                },
                ErrorClass::Lockout,
            ),
            (
                TpmError::UnsupportedKey { detail: "d".into() },
                ErrorClass::Other,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error:?}");
        }
    }

    #[test]
    fn classify_reads_through_backend_error() {
        let error: ra_signer::Error = TpmError::DeviceNotFound {
            path: "/dev/tpmrm0".into(),
        }
        .into();
        assert_eq!(classify(&error), Some(ErrorClass::NotFound));
        let other = ra_signer::Error::UnsupportedKey("x".into());
        assert_eq!(classify(&other), None);
    }
}
