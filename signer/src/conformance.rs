//! The conformance suite every [`Signer`] backend runs in its tests, so the file, PKCS#11
//! and TPM signers are held to one contract.

use crate::{Algorithm, Certificate, KeyKind, Signer, issued_by, verify_signature};

/// Runs every conformance check against `signer` and returns the first failure as a
/// message naming the check.
pub fn check(signer: &dyn Signer) -> Result<(), String> {
    let cert = Certificate::from_der(signer.certificate().to_vec(), "signer certificate")
        .map_err(|e| format!("certificate does not parse: {e}"))?;

    let expected = cert.key_kind().algorithm();
    if signer.algorithm() != expected {
        return Err(format!(
            "algorithm is {:?} but the certificate key calls for {expected:?}",
            signer.algorithm()
        ));
    }

    check_chain(signer, &cert)?;

    let messages: [&[u8]; 4] = [
        b"",
        b"a",
        &[0xff; 1000],
        b"AWS4-X509-RSA-SHA256\n20261204T120000Z",
    ];
    for message in messages {
        let signature = signer
            .sign(message)
            .map_err(|e| format!("sign({} bytes) failed: {e}", message.len()))?;
        check_encoding(&cert, &signature)?;
        if !verify_signature(&cert, message, &signature) {
            return Err(format!(
                "signature over {} bytes does not verify with the certificate key",
                message.len()
            ));
        }
        if verify_signature(&cert, b"some other message", &signature) {
            return Err("signature verifies over a different message".into());
        }
    }
    Ok(())
}

fn check_chain(signer: &dyn Signer, leaf: &Certificate) -> Result<(), String> {
    let mut previous = leaf.clone();
    for (index, der) in signer.chain().iter().enumerate() {
        if der.as_slice() == leaf.der() {
            return Err(format!("chain entry {index} repeats the leaf"));
        }
        let link = Certificate::from_der(der.clone(), "chain entry")
            .map_err(|e| format!("chain entry {index} does not parse: {e}"))?;
        if !issued_by(&previous, &link) {
            return Err(format!(
                "chain entry {index} did not issue the link before it"
            ));
        }
        previous = link;
    }
    if signer.chain().len() > crate::MAX_CHAIN_LEN {
        return Err(format!("chain has {} entries", signer.chain().len()));
    }
    Ok(())
}

fn check_encoding(cert: &Certificate, signature: &[u8]) -> Result<(), String> {
    match (cert.key_kind(), cert.key_kind().algorithm()) {
        (KeyKind::Rsa { bits }, Algorithm::RsaPkcs1Sha256) => {
            if signature.len() != bits.div_ceil(8) {
                return Err(format!(
                    "RSA signature is {} bytes, the modulus {bits} bits",
                    signature.len()
                ));
            }
        }
        _ => {
            // DER SEQUENCE { INTEGER r, INTEGER s }, not raw r || s.
            let well_formed = signature.first() == Some(&0x30)
                && signature.get(1).map(|&l| usize::from(l) + 2) == Some(signature.len())
                && signature.get(2) == Some(&0x02);
            if !well_formed {
                return Err("ECDSA signature is not a DER SEQUENCE { r, s }".into());
            }
        }
    }
    Ok(())
}
