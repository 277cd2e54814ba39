use std::fmt;
use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

/// An error from opening a PKCS#11 token or signing with it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A PKCS#11 URI is malformed. `uri` has any `pin-value` redacted.
    InvalidUri { uri: String, reason: String },
    /// The configuration is inconsistent. The message names the conflicting settings.
    InvalidConfig(String),
    /// The `pin-source` file could not be read.
    PinSource {
        path: String,
        source: std::io::Error,
    },
    /// No PKCS#11 module file exists at any of the paths tried.
    ModuleNotFound { tried: Vec<PathBuf> },
    /// The PKCS#11 module could not be loaded or initialised.
    ModuleLoad { path: PathBuf, source: CkError },
    /// No initialised token matches the URI's token and slot attributes.
    TokenNotFound {
        filter: String,
        seen: Vec<TokenSummary>,
    },
    /// More than one token matches the URI's token and slot attributes.
    AmbiguousToken {
        filter: String,
        matched: Vec<TokenSummary>,
    },
    /// No object on the token matches. `object` describes the search, and `available`
    /// lists the objects of that class.
    ObjectNotFound {
        object: String,
        token: String,
        available: Vec<String>,
    },
    /// More than one object on the token matches.
    AmbiguousObject {
        object: String,
        token: String,
        matched: Vec<String>,
    },
    /// The token needs a login but no PIN was given.
    PinRequired { token: String },
    /// The token rejected the PIN (`CKR_PIN_INCORRECT`, `CKR_PIN_INVALID` or
    /// `CKR_PIN_LEN_RANGE`). The signer never retries a rejected PIN.
    PinIncorrect { token: String, source: CkError },
    /// The user PIN is locked or expired (`CKR_PIN_LOCKED`, `CKR_PIN_EXPIRED`, or the
    /// token's `CKF_USER_PIN_LOCKED` flag).
    PinLocked {
        token: String,
        source: Option<CkError>,
    },
    /// The key has `CKA_ALWAYS_AUTHENTICATE` set but PIN reuse was not allowed.
    ReusePinRequired { key: String },
    /// The token offers no mechanism this signer can use for the key.
    UnsupportedMechanism { token: String, reason: String },
    /// The token returned a signature of the wrong form, for example a wrong length.
    MalformedSignature { token: String, reason: String },
    /// The private key does not belong to the certificate.
    KeyMismatch { certificate: String, key: String },
    /// A certificate from the token or the caller is unusable.
    Certificate(ra_signer::Error),
    /// A PKCS#11 call failed. `context` names the operation.
    Pkcs11 { context: String, source: CkError },
}

/// The caller's next step for an [`Error`], from [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The PIN was rejected or is locked. Retrying with the same PIN can lock the token.
    Pin,
    /// The module, token or object is missing. The token may be unplugged, so a later
    /// retry can succeed.
    NotFound,
    /// The session or device failed after the signer's one reconnect attempt. Retry with
    /// backoff.
    Transient,
    /// The URI, PIN settings, key or token capabilities are wrong. Retrying cannot help.
    Config,
    /// Any other failure of the module or token.
    Other,
}

/// The identity of a token as seen during token selection, for error messages and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSummary {
    /// Slot ID as the module reported it; only valid until the module is reinitialised.
    pub slot_id: u64,
    /// Token label, with space and NUL padding trimmed.
    pub label: String,
    /// Token serial number, with padding trimmed.
    pub serial: String,
    /// Token manufacturer ID, with padding trimmed.
    pub manufacturer: String,
    /// Token model, with padding trimmed.
    pub model: String,
    /// Whether the token is initialised (`CKF_TOKEN_INITIALIZED`).
    pub initialized: bool,
}

impl fmt::Display for TokenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token \"{}\" serial \"{}\" ({} {}, slot {})",
            self.label, self.serial, self.manufacturer, self.model, self.slot_id
        )?;
        if !self.initialized {
            write!(f, " not initialised")?;
        }
        Ok(())
    }
}

impl Error {
    /// Classifies the error by what the caller should do next.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::PinIncorrect { .. } | Error::PinLocked { .. } => ErrorKind::Pin,
            Error::ModuleNotFound { .. }
            | Error::TokenNotFound { .. }
            | Error::ObjectNotFound { .. } => ErrorKind::NotFound,
            Error::InvalidUri { .. }
            | Error::InvalidConfig(_)
            | Error::PinSource { .. }
            | Error::PinRequired { .. }
            | Error::ReusePinRequired { .. }
            | Error::AmbiguousToken { .. }
            | Error::AmbiguousObject { .. }
            | Error::UnsupportedMechanism { .. }
            | Error::KeyMismatch { .. }
            | Error::Certificate(_) => ErrorKind::Config,
            Error::ModuleLoad { source, .. } => match source {
                CkError::LibraryLoading(_) | CkError::MissingSymbol(_) => ErrorKind::Config,
                _ => ErrorKind::Other,
            },
            Error::Pkcs11 { source, .. } if is_transient_code(source) => ErrorKind::Transient,
            Error::Pkcs11 { .. } | Error::MalformedSignature { .. } => ErrorKind::Other,
        }
    }

    /// Returns whether the session or device failed in a way that a later retry may fix:
    /// `CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`, `CKR_DEVICE_REMOVED`,
    /// `CKR_TOKEN_NOT_PRESENT`, `CKR_CRYPTOKI_NOT_INITIALIZED` or `CKR_USER_NOT_LOGGED_IN`.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// Returns the PKCS#11 return code and function, when a PKCS#11 call failed.
    pub fn pkcs11_code(&self) -> Option<(RvError, Function)> {
        let source = match self {
            Error::ModuleLoad { source, .. }
            | Error::PinIncorrect { source, .. }
            | Error::Pkcs11 { source, .. } => source,
            Error::PinLocked {
                source: Some(source),
                ..
            } => source,
            _ => return None,
        };
        match source {
            CkError::Pkcs11(rv, function) => Some((*rv, *function)),
            _ => None,
        }
    }

    /// Returns whether the failure means the session must be reopened, which covers the
    /// transient codes and invalid key handles after a token was reinserted.
    pub(crate) fn needs_reconnect(&self) -> bool {
        match self {
            Error::Pkcs11 { source, .. } => {
                is_transient_code(source)
                    || matches!(
                        source,
                        CkError::Pkcs11(
                            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid,
                            _
                        )
                    )
            }
            _ => false,
        }
    }

    /// Returns whether the failure means the session handle no longer exists, so closing
    /// it would only fail again.
    pub(crate) fn session_is_gone(&self) -> bool {
        matches!(
            self,
            Error::Pkcs11 {
                source: CkError::Pkcs11(
                    RvError::SessionHandleInvalid
                        | RvError::SessionClosed
                        | RvError::DeviceRemoved
                        | RvError::TokenNotPresent
                        | RvError::CryptokiNotInitialized,
                    _
                ),
                ..
            }
        )
    }
}

fn is_transient_code(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized
                | RvError::UserNotLoggedIn,
            _
        )
    )
}

/// Wraps a failed PKCS#11 call. Return codes that concern the PIN get their own variants,
/// so no caller can mistake a rejected PIN for a transient failure and retry it.
pub(crate) fn call_error(context: impl Into<String>, token: &str, source: CkError) -> Error {
    match source {
        CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _) => {
            Error::PinIncorrect {
                token: token.to_owned(),
                source,
            }
        }
        CkError::Pkcs11(RvError::PinLocked | RvError::PinExpired, _) => Error::PinLocked {
            token: token.to_owned(),
            source: Some(source),
        },
        source => Error::Pkcs11 {
            context: context.into(),
            source,
        },
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUri { uri, reason } => write!(f, "invalid PKCS#11 URI {uri}: {reason}"),
            Error::InvalidConfig(message) => write!(f, "invalid PKCS#11 configuration: {message}"),
            Error::PinSource { path, .. } => write!(f, "cannot read the PIN file {path}"),
            Error::ModuleNotFound { tried } => {
                write!(f, "no PKCS#11 module found; tried ")?;
                write_list(f, tried.iter().map(|p| p.display()))?;
                write!(f, "; set module-path in the URI or give the module path")
            }
            Error::ModuleLoad { path, .. } => {
                write!(f, "cannot load PKCS#11 module {}", path.display())
            }
            Error::TokenNotFound { filter, seen } => {
                write!(f, "no PKCS#11 token matches {filter}; ")?;
                if seen.is_empty() {
                    write!(f, "the module reports no tokens")
                } else {
                    write!(f, "tokens seen: ")?;
                    write_list(f, seen.iter())
                }
            }
            Error::AmbiguousToken { filter, matched } => {
                write!(f, "several PKCS#11 tokens match {filter}: ")?;
                write_list(f, matched.iter())?;
                write!(f, "; add token= or serial= to the URI")
            }
            Error::ObjectNotFound {
                object,
                token,
                available,
            } => {
                write!(f, "no {object} on {token}")?;
                if available.is_empty() {
                    write!(f, "; the token shows none of that class")
                } else {
                    write!(f, "; found ")?;
                    write_list(f, available.iter())
                }
            }
            Error::AmbiguousObject {
                object,
                token,
                matched,
            } => {
                write!(f, "several objects match {object} on {token}: ")?;
                write_list(f, matched.iter())?;
                write!(f, "; add id= or object= to the URI")
            }
            Error::PinRequired { token } => write!(
                f,
                "{token} requires a login but no PIN was given; add pin-source to the URI \
                 or give the PIN"
            ),
            Error::PinIncorrect { token, .. } => write!(
                f,
                "{token} rejected the PIN; it was not retried, check it before the next \
                 attempt because repeated failures lock the token"
            ),
            Error::PinLocked { token, .. } => write!(
                f,
                "the user PIN of {token} is locked or expired; unlock or reset it with the \
                 security officer PIN"
            ),
            Error::ReusePinRequired { key } => write!(
                f,
                "{key} requires the PIN for every signature (CKA_ALWAYS_AUTHENTICATE); pass \
                 --reuse-pin to log in with the same PIN before each signature"
            ),
            Error::UnsupportedMechanism { token, reason } => {
                write!(f, "{token} cannot sign with this key: {reason}")
            }
            Error::MalformedSignature { token, reason } => {
                write!(f, "{token} returned a malformed signature: {reason}")
            }
            Error::KeyMismatch { certificate, key } => write!(
                f,
                "{key} does not match the public key of certificate {certificate}; check that \
                 the key URI names the same identity"
            ),
            Error::Certificate(_) => write!(f, "unusable certificate"),
            Error::Pkcs11 { context, .. } => write!(f, "{context} failed"),
        }
    }
}

fn write_list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = T>,
) -> fmt::Result {
    for (index, item) in items.enumerate() {
        if index > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::PinSource { source, .. } => Some(source),
            Error::ModuleLoad { source, .. }
            | Error::PinIncorrect { source, .. }
            | Error::Pkcs11 { source, .. } => Some(source),
            Error::PinLocked {
                source: Some(source),
                ..
            } => Some(source),
            Error::Certificate(source) => Some(source),
            _ => None,
        }
    }
}

/// Boxes the error as [`ra_signer::Error::Backend`]. Callers get it back with
/// `source()` and `downcast_ref::<ra_signer_pkcs11::Error>()`.
impl From<Error> for ra_signer::Error {
    fn from(error: Error) -> Self {
        ra_signer::Error::Backend {
            context: "PKCS#11 signer".into(),
            source: Box::new(error),
        }
    }
}

/// Recovers this crate's error from a [`ra_signer::Error`] that [`From<Error>`] produced,
/// and maps the trait crate's own variants to the closest variant here.
pub(crate) fn from_signer_error(error: ra_signer::Error, key: &str) -> Error {
    match error {
        ra_signer::Error::Backend { source, .. } => match source.downcast::<Error>() {
            Ok(own) => *own,
            Err(other) => Error::Certificate(ra_signer::Error::Backend {
                context: "PKCS#11 signer".into(),
                source: other,
            }),
        },
        ra_signer::Error::KeyMismatch { certificate } => Error::KeyMismatch {
            certificate,
            key: key.to_owned(),
        },
        other => Error::Certificate(other),
    }
}
