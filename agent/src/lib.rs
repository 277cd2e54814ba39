//! ra-agent: temporary AWS credentials from IAM Roles Anywhere for edge devices.
//!
//! The binary's `main` only parses arguments and sets up logging; everything it runs is
//! here so tests can drive it.
//!
//! Features, all on by default: `file-key` signs with PEM keys on disk, `pkcs11` with keys
//! in a PKCS#11 token, and `tpm` with TPM 2.0 keys in pure Rust.
#![forbid(unsafe_code)]

pub mod arn;
pub mod atomic;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod error;
pub mod http;
pub mod logger;
pub mod outputs;
#[cfg(feature = "pkcs11")]
mod pkcs11;
pub mod serve;
pub mod session;
pub mod shared_file;
pub mod signers;
pub mod sigv4;
pub mod store;
#[cfg(feature = "tpm")]
mod tpm;
