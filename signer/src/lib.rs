//! The [`Signer`] trait that every ra-agent key backend implements, and the certificate
//! handling the backends share.
//!
//! IAM Roles Anywhere signs the SigV4 string to sign with the private key of an X.509
//! certificate. The hash is always SHA-256, whatever the key size or curve:
//!
//! | key | algorithm name | signature bytes |
//! | --- | --- | --- |
//! | RSA | `AWS4-X509-RSA-SHA256` | PKCS#1 v1.5 over SHA-256, as long as the modulus |
//! | EC P-256, P-384 | `AWS4-X509-ECDSA-SHA256` | ECDSA over SHA-256, DER `SEQUENCE { r, s }` |
//!
//! Features: `file-key` (default) adds [`file::FileSigner`] for PEM keys on disk.
#![forbid(unsafe_code)]

mod cert;
mod chain;
pub mod conformance;
mod error;
#[cfg(feature = "file-key")]
pub mod file;
mod matches;
pub mod pem;

pub use cert::{Certificate, KeyKind, read_certificates};
pub use chain::{MAX_CHAIN_LEN, build_chain, issued_by};
pub use error::{BoxError, Error};
pub use matches::{check_key_matches, verify_signature};

/// The signature algorithm a [`Signer`] produces, named as Roles Anywhere names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, section 8.2).
    RsaPkcs1Sha256,
    /// ECDSA with SHA-256 on any supported curve, DER-encoded.
    EcdsaSha256,
}

impl Algorithm {
    /// Returns the name that goes first in the `Authorization` header and the string to sign.
    pub fn aws_name(self) -> &'static str {
        match self {
            Algorithm::RsaPkcs1Sha256 => "AWS4-X509-RSA-SHA256",
            Algorithm::EcdsaSha256 => "AWS4-X509-ECDSA-SHA256",
        }
    }
}

/// A private key bound to an X.509 certificate, able to sign CreateSession requests.
///
/// Implementations keep the key where it lives (a file, a PKCS#11 token, a TPM) and only
/// hand out signatures. Constructors must check that the key matches the certificate,
/// for example with [`check_key_matches`], and fail with [`Error::KeyMismatch`].
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// Returns the end-entity certificate, DER-encoded.
    fn certificate(&self) -> &[u8];

    /// Returns the intermediate certificates, DER-encoded, each one the issuer of the one
    /// before it (the first issued the end-entity certificate). Never contains the
    /// end-entity certificate itself; may be empty.
    fn chain(&self) -> &[Vec<u8>];

    /// Returns the algorithm [`Signer::sign`] produces.
    fn algorithm(&self) -> Algorithm;

    /// Signs `message` (the whole message, not a digest: the signer hashes it with SHA-256).
    ///
    /// Returns a PKCS#1 v1.5 signature for RSA keys and a DER `SEQUENCE { r, s }` for EC
    /// keys, as the table in the crate documentation shows.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
}

impl<S: Signer + ?Sized> Signer for Box<S> {
    fn certificate(&self) -> &[u8] {
        (**self).certificate()
    }
    fn chain(&self) -> &[Vec<u8>] {
        (**self).chain()
    }
    fn algorithm(&self) -> Algorithm {
        (**self).algorithm()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        (**self).sign(message)
    }
}

/// Converts a raw `r || s` ECDSA signature, as PKCS#11 `CKM_ECDSA` and the TPM return
/// it, into the DER `SEQUENCE { r, s }` that Roles Anywhere expects.
///
/// Returns `None` when `raw` is empty or has an odd length.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = der::unsigned_integer(r);
    body.extend_from_slice(&der::unsigned_integer(s));
    let mut out = Vec::with_capacity(body.len() + 3);
    der::push_tlv(&mut out, 0x30, &body);
    Some(out)
}

/// Minimal DER writing helpers (X.690) for the few structures the signers build.
pub mod der {
    /// Encodes big-endian magnitude bytes as a DER INTEGER: leading zeros dropped, one
    /// zero byte added when the top bit is set so the value stays positive.
    pub fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let magnitude = &bytes[start..];
        let pad = magnitude.first().is_none_or(|&b| b & 0x80 != 0);
        let mut value = Vec::with_capacity(magnitude.len() + 1);
        if pad {
            value.push(0);
        }
        value.extend_from_slice(magnitude);
        let mut out = Vec::with_capacity(value.len() + 4);
        push_tlv(&mut out, 0x02, &value);
        out
    }

    /// Appends a tag, a definite length (up to 65535 bytes) and the value.
    pub fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
        out.push(tag);
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend_from_slice(&[0x81, len as u8]);
        } else {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_raw_to_der_pads_high_bit() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80;
        raw[63] = 0x01;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        // s is 31 zero bytes and a one: minimal encoding is a single byte.
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 0x01]);
    }

    #[test]
    fn ecdsa_raw_to_der_rejects_odd_length() {
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
        assert!(ecdsa_raw_to_der(&[]).is_none());
    }
}
