use ring::signature::{self, UnparsedPublicKey};

use crate::{Certificate, Error, KeyKind, Signer};

/// Verifies `signature` over `message` with the certificate's public key, using the
/// algorithm Roles Anywhere uses for that key type (SHA-256 always).
pub fn verify_signature(cert: &Certificate, message: &[u8], signature: &[u8]) -> bool {
    let algorithm: &dyn signature::VerificationAlgorithm = match cert.key_kind() {
        KeyKind::Rsa { .. } => &signature::RSA_PKCS1_2048_8192_SHA256,
        KeyKind::P256 => &signature::ECDSA_P256_SHA256_ASN1,
        KeyKind::P384 => &signature::ECDSA_P384_SHA256_ASN1,
    };
    UnparsedPublicKey::new(algorithm, cert.public_key())
        .verify(message, signature)
        .is_ok()
}

/// Checks that `signer`'s key belongs to its certificate by signing a probe message and
/// verifying the result with the certificate's public key.
///
/// This works the same for every backend, including tokens that do not expose the public
/// half of a private key object. It costs one signature.
pub fn check_key_matches(signer: &dyn Signer, what: &str) -> Result<(), Error> {
    const PROBE: &[u8] = b"ra-agent key and certificate match probe";
    let cert = Certificate::from_der(signer.certificate().to_vec(), what)?;
    let signature = signer.sign(PROBE)?;
    if verify_signature(&cert, PROBE, &signature) {
        Ok(())
    } else {
        Err(Error::KeyMismatch {
            certificate: what.to_owned(),
        })
    }
}
