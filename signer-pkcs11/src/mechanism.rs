//! Signature mechanisms: which PKCS#11 mechanism signs a Roles Anywhere request, and how
//! its output becomes the signature bytes the request carries.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};
use cryptoki::types::RawAuthPin;
use ra_signer::KeyKind;
use zeroize::Zeroizing;

use crate::error::{Error, call_error};

/// The DER prefix of a PKCS#1 v1.5 `DigestInfo` for SHA-256, from RFC 8017 section 9.2,
/// note 1. The 32-byte hash follows it.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The PKCS#11 mechanism a signer uses and what it expects as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignMechanism {
    /// `CKM_SHA256_RSA_PKCS`: the token hashes the message.
    Sha256RsaPkcs,
    /// `CKM_RSA_PKCS` over a SHA-256 `DigestInfo` that the host builds.
    RsaPkcsDigestInfo,
    /// `CKM_ECDSA` over a SHA-256 hash that the host computes. Returns raw `r || s`.
    Ecdsa { coordinate_len: usize },
    /// `CKM_ECDSA_SHA256`: the token hashes the message. Returns raw `r || s`.
    EcdsaSha256 { coordinate_len: usize },
}

impl SignMechanism {
    /// Picks the mechanism for a key, given the mechanisms the token offers for signing.
    /// `None` means the module did not report them, and the usual mechanisms are assumed.
    ///
    /// Keys with `CKA_ALWAYS_AUTHENTICATE` need a mechanism that can sign in several
    /// parts: the context-specific login must come between `C_SignInit` and the signing
    /// call, and `cryptoki` offers that order only through `C_SignUpdate`/`C_SignFinal`.
    /// `CKM_RSA_PKCS` and `CKM_ECDSA` are single-part mechanisms, so they cannot serve.
    pub(crate) fn choose(
        kind: KeyKind,
        available: Option<&[MechanismType]>,
        always_authenticate: bool,
    ) -> Result<Self, String> {
        let offers =
            |mechanism: MechanismType| available.is_none_or(|list| list.contains(&mechanism));
        match kind {
            KeyKind::Rsa { .. } => {
                if offers(MechanismType::SHA256_RSA_PKCS) {
                    Ok(SignMechanism::Sha256RsaPkcs)
                } else if always_authenticate {
                    Err("the key requires a login for every signature, which needs \
                         CKM_SHA256_RSA_PKCS, and the token does not offer it"
                        .into())
                } else if offers(MechanismType::RSA_PKCS) {
                    Ok(SignMechanism::RsaPkcsDigestInfo)
                } else {
                    Err("the token offers neither CKM_SHA256_RSA_PKCS nor CKM_RSA_PKCS".into())
                }
            }
            KeyKind::P256 | KeyKind::P384 => {
                let coordinate_len = if kind == KeyKind::P256 { 32 } else { 48 };
                if always_authenticate {
                    if available.is_some_and(|list| list.contains(&MechanismType::ECDSA_SHA256)) {
                        Ok(SignMechanism::EcdsaSha256 { coordinate_len })
                    } else {
                        Err("the key requires a login for every signature, which needs \
                             CKM_ECDSA_SHA256 (CKM_ECDSA is single-part only), and the token \
                             does not offer it"
                            .into())
                    }
                } else if offers(MechanismType::ECDSA) {
                    Ok(SignMechanism::Ecdsa { coordinate_len })
                } else {
                    Err("the token does not offer CKM_ECDSA".into())
                }
            }
            _ => Err(format!("unsupported key type {kind:?}")),
        }
    }

    /// Returns the PKCS#11 name of the mechanism, for logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SignMechanism::Sha256RsaPkcs => "CKM_SHA256_RSA_PKCS",
            SignMechanism::RsaPkcsDigestInfo => "CKM_RSA_PKCS",
            SignMechanism::Ecdsa { .. } => "CKM_ECDSA",
            SignMechanism::EcdsaSha256 { .. } => "CKM_ECDSA_SHA256",
        }
    }

    /// Signs `message` with `key` and returns the signature as Roles Anywhere expects it:
    /// PKCS#1 v1.5 bytes for RSA, DER `SEQUENCE { r, s }` for ECDSA.
    ///
    /// With `context_pin`, the signer logs in with `CKU_CONTEXT_SPECIFIC` after
    /// `C_SignInit`, as keys with `CKA_ALWAYS_AUTHENTICATE` require.
    pub(crate) fn sign(
        self,
        session: &Session,
        key: ObjectHandle,
        message: &[u8],
        context_pin: Option<&Zeroizing<String>>,
        token: &str,
    ) -> Result<Vec<u8>, Error> {
        let context = || format!("signing with {} on {token}", self.name());
        let raw = match context_pin {
            Some(pin) => {
                let mechanism = match self {
                    SignMechanism::Sha256RsaPkcs => Mechanism::Sha256RsaPkcs,
                    SignMechanism::EcdsaSha256 { .. } => Mechanism::EcdsaSha256,
                    // choose() never pairs a single-part mechanism with a context login.
                    _ => {
                        return Err(Error::UnsupportedMechanism {
                            token: token.to_owned(),
                            reason: format!("{} cannot sign in several parts", self.name()),
                        });
                    }
                };
                session
                    .sign_init(&mechanism, key)
                    .map_err(|e| call_error(context(), token, e))?;
                let pin = RawAuthPin::new(Box::new(pin.as_bytes().to_vec()));
                session
                    .login_with_raw(UserType::ContextSpecific, &pin)
                    .map_err(|e| {
                        call_error(format!("context-specific login on {token}"), token, e)
                    })?;
                session
                    .sign_update(message)
                    .map_err(|e| call_error(context(), token, e))?;
                session
                    .sign_final()
                    .map_err(|e| call_error(context(), token, e))?
            }
            None => {
                let result = match self {
                    SignMechanism::Sha256RsaPkcs => {
                        session.sign(&Mechanism::Sha256RsaPkcs, key, message)
                    }
                    SignMechanism::RsaPkcsDigestInfo => {
                        session.sign(&Mechanism::RsaPkcs, key, &sha256_digest_info(message))
                    }
                    SignMechanism::Ecdsa { .. } => {
                        session.sign(&Mechanism::Ecdsa, key, &sha256(message))
                    }
                    SignMechanism::EcdsaSha256 { .. } => {
                        session.sign(&Mechanism::EcdsaSha256, key, message)
                    }
                };
                result.map_err(|e| call_error(context(), token, e))?
            }
        };
        self.encode(raw, token)
    }

    /// Converts the token's output to the wire form: ECDSA `r || s` becomes DER.
    fn encode(self, raw: Vec<u8>, token: &str) -> Result<Vec<u8>, Error> {
        match self {
            SignMechanism::Sha256RsaPkcs | SignMechanism::RsaPkcsDigestInfo => Ok(raw),
            SignMechanism::Ecdsa { coordinate_len }
            | SignMechanism::EcdsaSha256 { coordinate_len } => {
                if raw.len() != 2 * coordinate_len {
                    return Err(Error::MalformedSignature {
                        token: token.to_owned(),
                        reason: format!(
                            "{} returned {} bytes, expected {} (r || s)",
                            self.name(),
                            raw.len(),
                            2 * coordinate_len
                        ),
                    });
                }
                ra_signer::ecdsa_raw_to_der(&raw).ok_or_else(|| Error::MalformedSignature {
                    token: token.to_owned(),
                    reason: "empty ECDSA signature".into(),
                })
            }
        }
    }
}

fn sha256(message: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, message)
        .as_ref()
        .to_vec()
}

/// Builds the PKCS#1 v1.5 `DigestInfo` for the SHA-256 hash of `message`: the input
/// `CKM_RSA_PKCS` needs to produce an RSASSA-PKCS1-v1_5 SHA-256 signature.
pub fn sha256_digest_info(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SHA256_DIGEST_INFO_PREFIX.len() + 32);
    out.extend_from_slice(&SHA256_DIGEST_INFO_PREFIX);
    out.extend_from_slice(&sha256(message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [MechanismType; 4] = [
        MechanismType::SHA256_RSA_PKCS,
        MechanismType::RSA_PKCS,
        MechanismType::ECDSA,
        MechanismType::ECDSA_SHA256,
    ];
    const RSA: KeyKind = KeyKind::Rsa { bits: 2048 };

    #[test]
    fn rsa_prefers_sha256_rsa_pkcs() {
        assert_eq!(
            SignMechanism::choose(RSA, Some(&ALL), false),
            Ok(SignMechanism::Sha256RsaPkcs)
        );
        assert_eq!(
            SignMechanism::choose(RSA, Some(&ALL), true),
            Ok(SignMechanism::Sha256RsaPkcs)
        );
    }

    #[test]
    fn rsa_falls_back_to_rsa_pkcs() {
        let list = [MechanismType::RSA_PKCS, MechanismType::ECDSA];
        assert_eq!(
            SignMechanism::choose(RSA, Some(&list), false),
            Ok(SignMechanism::RsaPkcsDigestInfo)
        );
        let error = SignMechanism::choose(RSA, Some(&list), true).unwrap_err();
        assert!(error.contains("CKM_SHA256_RSA_PKCS"), "{error}");
        let error = SignMechanism::choose(RSA, Some(&[MechanismType::ECDSA]), false).unwrap_err();
        assert!(error.contains("neither"), "{error}");
    }

    #[test]
    fn ec_uses_host_hash_unless_always_authenticate() {
        assert_eq!(
            SignMechanism::choose(KeyKind::P256, Some(&ALL), false),
            Ok(SignMechanism::Ecdsa { coordinate_len: 32 })
        );
        assert_eq!(
            SignMechanism::choose(KeyKind::P384, Some(&ALL), false),
            Ok(SignMechanism::Ecdsa { coordinate_len: 48 })
        );
        assert_eq!(
            SignMechanism::choose(KeyKind::P384, Some(&ALL), true),
            Ok(SignMechanism::EcdsaSha256 { coordinate_len: 48 })
        );
        let error =
            SignMechanism::choose(KeyKind::P256, Some(&[MechanismType::ECDSA]), true).unwrap_err();
        assert!(error.contains("CKM_ECDSA_SHA256"), "{error}");
    }

    #[test]
    fn unknown_list_assumes_common_mechanisms() {
        assert_eq!(
            SignMechanism::choose(RSA, None, false),
            Ok(SignMechanism::Sha256RsaPkcs)
        );
        assert_eq!(
            SignMechanism::choose(KeyKind::P256, None, false),
            Ok(SignMechanism::Ecdsa { coordinate_len: 32 })
        );
        // Assuming is not enough for a key that needs a multi-part mechanism.
        assert!(SignMechanism::choose(KeyKind::P256, None, true).is_err());
    }

    #[test]
    fn empty_list_offers_nothing() {
        assert!(SignMechanism::choose(RSA, Some(&[]), false).is_err());
        assert!(SignMechanism::choose(KeyKind::P384, Some(&[]), false).is_err());
    }

    #[test]
    fn digest_info_is_der_of_sha256() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        let hash = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let info = sha256_digest_info(b"abc");
        assert_eq!(info.len(), 51);
        assert_eq!(&info[..19], &SHA256_DIGEST_INFO_PREFIX);
        let hex: String = info[19..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, hash);
        // The outer SEQUENCE length covers the rest of the encoding.
        assert_eq!(usize::from(info[1]) + 2, info.len());
    }

    #[test]
    fn ecdsa_output_length_is_checked() {
        let mechanism = SignMechanism::Ecdsa { coordinate_len: 32 };
        let error = mechanism.encode(vec![1; 63], "token").unwrap_err();
        assert!(matches!(error, Error::MalformedSignature { .. }));
        let der = mechanism.encode(vec![1; 64], "token").unwrap();
        assert_eq!(der[0], 0x30);
    }
}
