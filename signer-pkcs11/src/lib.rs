//! A [`ra_signer::Signer`] for keys on PKCS#11 tokens: smart cards, USB keys, HSMs and
//! SoftHSM2.
//!
//! Objects are named by PKCS#11 URIs (RFC 7512, see [`Pkcs11Uri`]). The certificate is
//! read from the token (or given as DER), the private key is found by the certificate's
//! `CKA_ID`, and the chain is built from intermediates the caller gives and certificates
//! on the token that verifiably issued each link.
//!
//! ```no_run
//! use ra_signer_pkcs11::{Pkcs11Config, Pkcs11Signer, Pkcs11Uri};
//!
//! let uri = Pkcs11Uri::parse("pkcs11:token=ra-test;object=rsa-cert?pin-source=/run/pin")?;
//! let signer = Pkcs11Signer::open(Pkcs11Config::new(uri))?;
//! # Ok::<(), ra_signer_pkcs11::Error>(())
//! ```
//!
//! Mechanisms: RSA keys sign with `CKM_SHA256_RSA_PKCS`, or with `CKM_RSA_PKCS` over a
//! SHA-256 `DigestInfo` when the token lacks the former. EC keys sign with `CKM_ECDSA`
//! over a SHA-256 hash computed on the host, and the raw `r || s` output is converted to
//! DER.
//!
//! Errors: [`Error::kind`] sorts failures into a rejected or locked PIN, something not
//! found, a transient session or device failure, a configuration mistake, and the rest.
//! The signer never retries a PIN the token rejected.
//!
//! Logging uses the `log` crate: the token label and serial and object IDs at info and
//! debug, reconnects and rejected PINs at warn. PINs are never logged.
//!
//! Tests: `cargo test -p ra-signer-pkcs11` runs the unit tests and, in `tests/`, runs
//! each token test in its own process against a fresh SoftHSM2 token made by
//! `tests/softhsm/setup-token.sh`. They need softhsm2, opensc (`pkcs11-tool` and
//! `pkcs11-spy.so`), openssl and p11-kit installed.
#![forbid(unsafe_code)]

mod config;
mod connect;
mod error;
pub mod mechanism;
mod objects;
mod signer;
mod token;
pub mod uri;

pub use config::{CertificateSource, Pkcs11Config};
pub use error::{Error, ErrorKind, TokenSummary};
pub use signer::Pkcs11Signer;
pub use uri::{ObjectType, Pkcs11Uri};
