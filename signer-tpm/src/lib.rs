//! A [`ra_signer::Signer`] backed by a TPM 2.0 key, talking to the TPM directly in Rust
//! (command marshalling from `tpm2-protocol`, no tpm2-tss or other C library).
//!
//! - TPM addresses ([`TpmAddress`]): the kernel character devices `/dev/tpmrm0`
//!   (default) and `/dev/tpm0`, swtpm on a Unix or TCP socket, and the Microsoft
//!   simulator protocol, written like tpm2-tss TCTI strings.
//! - Keys ([`KeySource`]): persistent handles (`handle:0x81000101`) and TSS2 private key
//!   files (`-----BEGIN TSS2 PRIVATE KEY-----`) under a hierarchy or a persistent parent.
//! - Authorization: password sessions (`TPM_RS_PW`) for the key, its parent and the
//!   hierarchy ([`TpmAuth`]).
//! - Signatures: RSASSA-PKCS1-v1_5 or ECDSA over a SHA-256 digest computed on the host.
//!
//! ```no_run
//! # fn main() -> Result<(), ra_signer::Error> {
//! use ra_signer_tpm::{TpmAuth, TpmSigner};
//! let certs = ra_signer::read_certificates(std::path::Path::new("cert.pem"))?;
//! let leaf = certs[0].clone();
//! let chain = ra_signer::build_chain(&leaf, &certs)
//!     .into_iter()
//!     .map(ra_signer::Certificate::into_der)
//!     .collect();
//! let signer = TpmSigner::open(
//!     "device:/dev/tpmrm0",
//!     "handle:0x81000101",
//!     TpmAuth::no_password(),
//!     leaf,
//!     chain,
//! )?;
//! # let _ = signer;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod address;
mod error;
mod keyfile;
mod public;
pub mod rc;
mod signer;
mod tpm;
pub mod transport;

pub use address::{Connect, DEFAULT_DEVICE, DEFAULT_SIMULATOR_PORT, TpmAddress};
pub use error::{ErrorClass, TpmError, classify, tpm_error};
pub use keyfile::{
    KeyFile, KeySource, RH_ENDORSEMENT, RH_NULL, RH_OWNER, is_hierarchy, is_persistent, is_tpm_key,
};
pub use signer::{TpmAuth, TpmSigner};
pub use tpm::{lockout_counter, transient_handles};
