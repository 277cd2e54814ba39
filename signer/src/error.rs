use std::fmt;

/// A boxed error from a backend, kept as the `source()` of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error loading a certificate or key, or signing.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A certificate could not be read or parsed; `what` names the file or object.
    InvalidCertificate { what: String, reason: String },
    /// A private key could not be read or parsed; `what` names the file or object.
    InvalidKey { what: String, reason: String },
    /// The key type or curve is not one Roles Anywhere accepts.
    UnsupportedKey(String),
    /// The private key does not belong to the certificate's public key.
    KeyMismatch { certificate: String },
    /// A file could not be read.
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The key backend (token, TPM) failed; the source contains its own error code.
    Backend { context: String, source: BoxError },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidCertificate { what, reason } => {
                write!(f, "invalid certificate {what}: {reason}")
            }
            Error::InvalidKey { what, reason } => write!(f, "invalid private key {what}: {reason}"),
            Error::UnsupportedKey(detail) => write!(
                f,
                "unsupported key: {detail} (use RSA 2048 bits or more, or EC P-256 or P-384)"
            ),
            Error::KeyMismatch { certificate } => write!(
                f,
                "the private key does not match the public key of certificate {certificate}; \
                 check that --private-key and --certificate name the same identity"
            ),
            Error::Io { path, .. } => write!(f, "cannot read {path}"),
            Error::Backend { context, .. } => write!(f, "{context}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Backend { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
