//! Checks of a key's TPM public area: can it sign what Roles Anywhere needs, with which
//! TPM2_Sign scheme, and what public key does it hold.

use ra_signer::der;
use ra_signer::{Algorithm, KeyKind};
use tpm2_protocol::data::{
    TpmAlgId, TpmEccCurve, TpmaObject, TpmtPublic, TpmuAsymScheme, TpmuPublicId, TpmuPublicParms,
};

use crate::error::TpmError;

/// The smallest RSA modulus Roles Anywhere accepts.
const MIN_RSA_BITS: u16 = 2048;
/// The RSA public exponent a TPM uses when the public area stores 0.
const DEFAULT_RSA_EXPONENT: u32 = 65537;

/// A TPM key that can sign for Roles Anywhere, and how to ask the TPM for a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyProfile {
    /// Key type and size, in the terms of the certificate.
    pub kind: KeyKind,
    /// The TPM2_Sign scheme: `TPM_ALG_RSASSA` or `TPM_ALG_ECDSA`, always with SHA-256.
    pub scheme: TpmAlgId,
    /// The public key in the encoding of a certificate's subjectPublicKey: a DER
    /// RSAPublicKey for RSA, an uncompressed point for EC.
    pub public_key: Vec<u8>,
}

impl KeyProfile {
    /// Returns the length of r and of s in an ECDSA signature, or `None` for RSA.
    pub fn ecdsa_scalar_len(&self) -> Option<usize> {
        match self.kind {
            KeyKind::P256 => Some(32),
            KeyKind::P384 => Some(48),
            _ => None,
        }
    }

    /// Returns the signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.kind.algorithm()
    }
}

fn unsupported(detail: String) -> TpmError {
    TpmError::UnsupportedKey { detail }
}

fn algorithm_name(algorithm: TpmAlgId) -> String {
    let name = match algorithm {
        TpmAlgId::Sha1 => "SHA-1",
        TpmAlgId::Sha256 => "SHA-256",
        TpmAlgId::Sha384 => "SHA-384",
        TpmAlgId::Sha512 => "SHA-512",
        TpmAlgId::Rsassa => "RSASSA",
        TpmAlgId::Rsapss => "RSAPSS",
        TpmAlgId::Ecdsa => "ECDSA",
        TpmAlgId::Ecdaa => "ECDAA",
        TpmAlgId::Ecschnorr => "EC-Schnorr",
        TpmAlgId::Sm2 => "SM2",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// Checks that `public` describes a key able to produce `AWS4-X509-RSA-SHA256` or
/// `AWS4-X509-ECDSA-SHA256` signatures through TPM2_Sign, and returns its profile.
///
/// A key whose public area fixes a scheme other than RSASSA or ECDSA with SHA-256 is
/// rejected here. The TPM signs with no scheme but the key's own (else TPM_RC_SCHEME),
/// and the key's own scheme would not give the SHA-256 signature Roles Anywhere
/// verifies. A key with scheme `TPM_ALG_NULL` is signed with RSASSA or ECDSA and
/// SHA-256, passed in the command.
pub(crate) fn profile(public: &TpmtPublic) -> Result<KeyProfile, TpmError> {
    let attributes = public.object_attributes;
    if !attributes.contains(TpmaObject::SIGN_ENCRYPT) {
        return Err(unsupported(
            "the key's sign attribute is clear, so the TPM will not sign with it; create \
             a signing key"
                .into(),
        ));
    }
    if attributes.contains(TpmaObject::RESTRICTED) {
        return Err(unsupported(
            "restricted signing keys (attestation keys) sign only digests the TPM computed \
             itself; create an unrestricted signing key"
                .into(),
        ));
    }
    match (&public.parameters, &public.unique) {
        (TpmuPublicParms::Rsa(parms), TpmuPublicId::Rsa(modulus)) => {
            let bits = parms.key_bits.value();
            if bits < MIN_RSA_BITS {
                return Err(unsupported(format!(
                    "RSA key of {bits} bits; Roles Anywhere needs 2048 bits or more"
                )));
            }
            check_scheme(parms.scheme.scheme, &parms.scheme.details, TpmAlgId::Rsassa)?;
            let exponent = match parms.exponent.value() {
                0 => DEFAULT_RSA_EXPONENT,
                e => e,
            };
            Ok(KeyProfile {
                kind: KeyKind::Rsa {
                    bits: usize::from(bits),
                },
                scheme: TpmAlgId::Rsassa,
                public_key: rsa_public_key_der(modulus, exponent),
            })
        }
        (TpmuPublicParms::Ecc(parms), TpmuPublicId::Ecc(point)) => {
            let (kind, len) = match parms.curve_id {
                TpmEccCurve::NistP256 => (KeyKind::P256, 32),
                TpmEccCurve::NistP384 => (KeyKind::P384, 48),
                other => {
                    return Err(unsupported(format!(
                        "EC curve {other}; Roles Anywhere accepts NIST P-256 and P-384"
                    )));
                }
            };
            check_scheme(parms.scheme.scheme, &parms.scheme.details, TpmAlgId::Ecdsa)?;
            let (x, y) = (&point.x[..], &point.y[..]);
            if x.len() > len || y.len() > len {
                return Err(unsupported("EC point longer than the curve size".into()));
            }
            let mut public_key = Vec::with_capacity(1 + 2 * len);
            public_key.push(0x04);
            public_key.extend(std::iter::repeat_n(0, len - x.len()));
            public_key.extend_from_slice(x);
            public_key.extend(std::iter::repeat_n(0, len - y.len()));
            public_key.extend_from_slice(y);
            Ok(KeyProfile {
                kind,
                scheme: TpmAlgId::Ecdsa,
                public_key,
            })
        }
        _ => Err(unsupported(format!(
            "object type {}; Roles Anywhere needs an RSA or EC key",
            public.object_type
        ))),
    }
}

fn check_scheme(
    scheme: TpmAlgId,
    details: &TpmuAsymScheme,
    wanted: TpmAlgId,
) -> Result<(), TpmError> {
    if scheme == TpmAlgId::Null {
        return Ok(());
    }
    let hash = match details {
        TpmuAsymScheme::Hash(h) => h.hash_alg,
        TpmuAsymScheme::Null => TpmAlgId::Null,
    };
    if scheme == wanted && hash == TpmAlgId::Sha256 {
        return Ok(());
    }
    let wanted_name = algorithm_name(wanted);
    Err(unsupported(format!(
        "the key's public area fixes the signing scheme {} with {}, and TPM2_Sign accepts \
         no other scheme for it; Roles Anywhere needs {wanted_name} with SHA-256, so \
         create the key with a null scheme or with {}-sha256",
        algorithm_name(scheme),
        algorithm_name(hash),
        wanted_name.to_lowercase()
    )))
}

/// Encodes an RSA public key as DER `RSAPublicKey ::= SEQUENCE { modulus, exponent }`.
fn rsa_public_key_der(modulus: &[u8], exponent: u32) -> Vec<u8> {
    let mut body = der::unsigned_integer(modulus);
    body.extend(der::unsigned_integer(&exponent.to_be_bytes()));
    let mut out = Vec::with_capacity(body.len() + 4);
    der::push_tlv(&mut out, 0x30, &body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_public_key_der_pads_modulus() {
        let der = rsa_public_key_der(&[0x80, 0x01], 65537);
        assert_eq!(
            der,
            [
                0x30, 0x0A, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01
            ]
        );
    }
}
