//! The agent's errors, sorted by what the caller does next, and the exit status of each
//! class.

use std::fmt;

/// Process exit statuses, one per class of failure. Documented in the README.
pub mod exit {
    /// Credentials obtained and written.
    pub const SUCCESS: u8 = 0;
    /// An internal error: a bug.
    pub const INTERNAL: u8 = 1;
    /// Invalid arguments or configuration: fix the command line, files or ARNs.
    pub const USAGE: u8 = 2;
    /// The service rejected the request (HTTP 4xx other than 429).
    pub const REJECTED: u8 = 3;
    /// Network or transient service failure (connect, TLS, timeout, 5xx, 429): retry later.
    pub const TRANSIENT: u8 = 4;
    /// The signer failed: token or TPM not found, wrong PIN, signing error.
    pub const SIGNER: u8 = 5;
    /// The credentials could not be written (permissions, full disk).
    pub const OUTPUT: u8 = 6;
}

/// Failures of the agent.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Invalid arguments or configuration; the message names the value and the fix.
    Usage(String),
    /// A certificate, key or signer backend failed.
    Signer(ra_signer::Error),
    /// The service responded with an error status.
    Rejected {
        status: u16,
        error_type: String,
        message: String,
        /// The response `Date` header, used to measure clock skew.
        date: Option<String>,
    },
    /// The request did not complete, or the service failed in a way worth retrying.
    Transient {
        context: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Writing an output file failed; the previous file is unchanged.
    Output {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Returns the exit status for this error's class.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Signer(e) => signer_exit_code(e),
            Error::Rejected { .. } => exit::REJECTED,
            Error::Transient { .. } => exit::TRANSIENT,
            Error::Output { .. } => exit::OUTPUT,
        }
    }

    /// Returns whether retrying soon may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }

    pub(crate) fn transient(context: impl Into<String>) -> Error {
        Error::Transient {
            context: context.into(),
            source: None,
        }
    }
}

/// Certificate and key file problems are configuration errors; backend failures (token,
/// TPM) are signer errors.
fn signer_exit_code(error: &ra_signer::Error) -> u8 {
    match error {
        ra_signer::Error::Backend { .. } => exit::SIGNER,
        _ => exit::USAGE,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => f.write_str(message),
            Error::Signer(e) => write!(f, "{e}"),
            Error::Rejected {
                status,
                error_type,
                message,
                ..
            } => write!(
                f,
                "the service rejected the request: HTTP {status} {error_type}: {message}"
            ),
            Error::Transient { context, .. } => f.write_str(context),
            Error::Output { path, .. } => write!(
                f,
                "cannot write {path}; the previous file is unchanged \
                 (check the directory's permissions and free space)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Signer(e) => std::error::Error::source(e),
            Error::Transient {
                source: Some(s), ..
            } => Some(s.as_ref()),
            Error::Output { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ra_signer::Error> for Error {
    fn from(e: ra_signer::Error) -> Self {
        Error::Signer(e)
    }
}

/// Formats `error` and its chain of sources on one line, each cause once. A layer whose
/// message the cause already contains (a bare "TPM" context, say) is dropped.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if cause_text.contains(&text) {
            text = cause_text;
        } else if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn report_joins_causes_once() {
        let chain = Layer(
            "cannot read a.pem",
            Some(Box::new(Layer("not found", None))),
        );
        assert_eq!(report(&chain), "cannot read a.pem: not found");
        let chain = Layer(
            "TPM",
            Some(Box::new(Layer(
                "TPM handle 0x81000999 does not exist",
                None,
            ))),
        );
        assert_eq!(report(&chain), "TPM handle 0x81000999 does not exist");
        let chain = Layer("failed: boom", Some(Box::new(Layer("boom", None))));
        assert_eq!(report(&chain), "failed: boom");
    }
}
