use x509_parser::prelude::*;

use crate::{Algorithm, Error};

/// The public key type of a certificate, as far as Roles Anywhere cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA with the modulus length in bits.
    Rsa { bits: usize },
    /// EC on NIST P-256.
    P256,
    /// EC on NIST P-384.
    P384,
}

impl KeyKind {
    /// Returns the signature algorithm a key of this kind produces.
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Rsa { .. } => Algorithm::RsaPkcs1Sha256,
            KeyKind::P256 | KeyKind::P384 => Algorithm::EcdsaSha256,
        }
    }
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// A parsed X.509 certificate with the facts the agent needs, owning its DER bytes.
#[derive(Debug, Clone)]
pub struct Certificate {
    der: Vec<u8>,
    serial: Vec<u8>,
    subject: String,
    issuer: String,
    not_before: i64,
    not_after: i64,
    key: KeyKind,
    spki: Vec<u8>,
    public_key: Vec<u8>,
}

impl Certificate {
    /// Parses a DER certificate; `what` names its origin in errors (a path or a URI).
    pub fn from_der(der: Vec<u8>, what: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidCertificate {
            what: what.to_owned(),
            reason,
        };
        let (rest, x509) =
            X509Certificate::from_der(&der).map_err(|e| invalid(format!("not DER X.509: {e}")))?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes after the certificate".into()));
        }
        let spki = x509.public_key();
        let key = key_kind(spki).map_err(|reason| match reason {
            KindError::Unsupported(d) => Error::UnsupportedKey(format!("{what}: {d}")),
            KindError::Malformed(d) => invalid(d),
        })?;
        let cert = Certificate {
            serial: x509.raw_serial().to_vec(),
            subject: x509.subject().to_string(),
            issuer: x509.issuer().to_string(),
            not_before: x509.validity().not_before.timestamp(),
            not_after: x509.validity().not_after.timestamp(),
            key,
            spki: spki.raw.to_vec(),
            public_key: spki.subject_public_key.data.to_vec(),
            der: Vec::new(),
        };
        Ok(Certificate { der, ..cert })
    }

    /// Returns the DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Consumes the certificate and returns its DER encoding.
    pub fn into_der(self) -> Vec<u8> {
        self.der
    }

    /// Returns the serial number as an unsigned decimal integer, the form the credential
    /// scope of a Roles Anywhere request uses.
    pub fn serial_decimal(&self) -> String {
        decimal_from_be(&self.serial)
    }

    /// Returns the subject distinguished name in RFC 4514 form.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Returns the issuer distinguished name in RFC 4514 form.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Returns notBefore as seconds since the Unix epoch.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// Returns notAfter as seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Returns the public key type.
    pub fn key_kind(&self) -> KeyKind {
        self.key
    }

    /// Returns the DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// Returns the contents of the subjectPublicKey BIT STRING: a DER RSAPublicKey for RSA,
    /// an uncompressed point for EC.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

enum KindError {
    Unsupported(String),
    Malformed(String),
}

fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyKind, KindError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_RSA => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) if rsa.key_size() < 2048 => Err(
                KindError::Unsupported(format!("RSA key of {} bits", rsa.key_size())),
            ),
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(KeyKind::Rsa {
                bits: rsa.key_size(),
            }),
            _ => Err(KindError::Malformed("malformed RSA public key".into())),
        },
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .ok_or_else(|| KindError::Malformed("EC key without a named curve".into()))?;
            match curve.as_str() {
                OID_P256 => Ok(KeyKind::P256),
                OID_P384 => Ok(KeyKind::P384),
                other => Err(KindError::Unsupported(format!("EC curve {other}"))),
            }
        }
        other => Err(KindError::Unsupported(format!(
            "public key algorithm {other}"
        ))),
    }
}

/// Converts a big-endian unsigned integer to decimal digits.
fn decimal_from_be(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::new(); // little-endian base-10 digits
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for digit in digits.iter_mut() {
            let value = u32::from(*digit) * 256 + carry;
            *digit = (value % 10) as u8;
            carry = value / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    if digits.is_empty() {
        return "0".into();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

/// Reads every certificate in a file: PEM (`CERTIFICATE` blocks, in order) or a single DER
/// certificate. Errors name the path.
pub fn read_certificates(path: &std::path::Path) -> Result<Vec<Certificate>, Error> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: what.clone(),
        source,
    })?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![Certificate::from_der(bytes, &what)?]);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::InvalidCertificate {
        what: what.clone(),
        reason: "neither PEM text nor DER".into(),
    })?;
    let blocks = crate::pem::parse(text).map_err(|reason| Error::InvalidCertificate {
        what: what.clone(),
        reason,
    })?;
    let certs = blocks
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| Certificate::from_der(b.der.to_vec(), &what))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(Error::InvalidCertificate {
            what,
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::decimal_from_be;

    #[test]
    fn decimal_from_be_matches_known_serials() {
        let hex = |s: &str| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            decimal_from_be(&hex("00c0ffee0123456789abcdef")),
            "233322351226215633162849775"
        );
        assert_eq!(decimal_from_be(&hex("7e57ab1e")), "2119674654");
        assert_eq!(
            decimal_from_be(&hex("1f71c5114a119fc0cc5a5a52fb3720ad")),
            "41796794418840706582093025104159514797"
        );
        assert_eq!(decimal_from_be(&[0]), "0");
        assert_eq!(decimal_from_be(&[]), "0");
    }
}
