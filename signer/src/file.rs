//! A signer for PEM private keys on disk: PKCS#8 (`PRIVATE KEY`), PKCS#1
//! (`RSA PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`). Meant for development and for moving a
//! fleet onto hardware keys; the key sits in process memory.

use std::path::Path;

use p384::ecdsa::signature::hazmat::PrehashSigner as _;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use zeroize::Zeroizing;

use crate::{Algorithm, Certificate, Error, Signer, build_chain, read_certificates};

/// A private key loaded from a PEM file, with its certificate and chain.
pub struct FileSigner {
    key: Key,
    certificate: Certificate,
    chain: Vec<Vec<u8>>,
    rng: SystemRandom,
}

enum Key {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    P384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = match self.key {
            Key::Rsa(_) => "RSA",
            Key::P256(_) => "P-256",
            Key::P384(_) => "P-384",
        };
        f.debug_struct("FileSigner")
            .field("key", &key)
            .field("subject", &self.certificate.subject())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl FileSigner {
    /// Loads the key at `key_path` and picks, from the certificates in `cert_path`, the one
    /// whose public key matches it. The other certificates in that file and those in
    /// `intermediates` become chain candidates (see [`build_chain`]).
    pub fn open(
        cert_path: &Path,
        key_path: &Path,
        intermediates: Option<&Path>,
    ) -> Result<Self, Error> {
        let key = read_key(key_path)?;
        let public = key.public_key();
        let mut certs = read_certificates(cert_path)?;
        let Some(index) = certs
            .iter()
            .position(|c| c.public_key() == public.as_slice())
        else {
            return Err(Error::KeyMismatch {
                certificate: cert_path.display().to_string(),
            });
        };
        let certificate = certs.remove(index);
        if let Some(path) = intermediates {
            certs.extend(read_certificates(path)?);
        }
        let chain = build_chain(&certificate, &certs)
            .into_iter()
            .map(Certificate::into_der)
            .collect();
        Ok(FileSigner {
            key,
            certificate,
            chain,
            rng: SystemRandom::new(),
        })
    }

    /// Returns the parsed end-entity certificate.
    pub fn parsed_certificate(&self) -> &Certificate {
        &self.certificate
    }
}

impl Signer for FileSigner {
    fn certificate(&self) -> &[u8] {
        self.certificate.der()
    }

    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn algorithm(&self) -> Algorithm {
        match self.key {
            Key::Rsa(_) => Algorithm::RsaPkcs1Sha256,
            Key::P256(_) | Key::P384(_) => Algorithm::EcdsaSha256,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = |reason: String| Error::Backend {
            context: "file key signing failed".into(),
            source: reason.into(),
        };
        match &self.key {
            Key::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &ring_sig::RSA_PKCS1_SHA256,
                    &self.rng,
                    message,
                    &mut signature,
                )
                .map_err(|_| failed("RSA signing failed".into()))?;
                Ok(signature)
            }
            Key::P256(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed("P-256 signing failed".into())),
            Key::P384(key) => {
                // ring signs P-384 only with SHA-384, so P-384 over SHA-256 goes through
                // the RustCrypto implementation with a host-computed digest.
                let digest = ring::digest::digest(&ring::digest::SHA256, message);
                let signature: p384::ecdsa::Signature = key
                    .sign_prehash(digest.as_ref())
                    .map_err(|e| failed(e.to_string()))?;
                Ok(signature.to_der().as_bytes().to_vec())
            }
        }
    }
}

impl Key {
    /// Returns the public key encoded as a certificate's subjectPublicKey contains it.
    fn public_key(&self) -> Vec<u8> {
        match self {
            Key::Rsa(pair) => pair.public_key().as_ref().to_vec(),
            Key::P256(pair) => pair.public_key().as_ref().to_vec(),
            Key::P384(key) => key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        }
    }
}

const OID_P256_DER: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384_DER: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn read_key(path: &Path) -> Result<Key, Error> {
    let what = path.display().to_string();
    let invalid = |reason: &str| Error::InvalidKey {
        what: what.clone(),
        reason: reason.to_owned(),
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: what.clone(),
        source,
    })?);
    if text.contains("-----BEGIN TSS2 PRIVATE KEY-----") {
        return Err(invalid(
            "this is a TPM key blob; it needs a build with the TPM signer",
        ));
    }
    let blocks = crate::pem::parse(&text).map_err(|reason| invalid(&reason))?;
    let block = blocks
        .iter()
        .find(|b| b.label.ends_with("PRIVATE KEY"))
        .ok_or_else(|| invalid("no PRIVATE KEY block found"))?;
    let rng = SystemRandom::new();
    match block.label.as_str() {
        "PRIVATE KEY" => {
            if let Ok(pair) = RsaKeyPair::from_pkcs8(&block.der) {
                return Ok(Key::Rsa(pair));
            }
            let p256 = &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING;
            if let Ok(pair) = EcdsaKeyPair::from_pkcs8(p256, &block.der, &rng) {
                return Ok(Key::P256(pair));
            }
            use p384::pkcs8::DecodePrivateKey as _;
            if let Ok(key) = p384::SecretKey::from_pkcs8_der(&block.der) {
                return Ok(Key::P384(key.into()));
            }
            Err(invalid(
                "PKCS#8 key is not RSA, EC P-256 or EC P-384 (or is malformed)",
            ))
        }
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.der)
            .map(Key::Rsa)
            .map_err(|e| invalid(&format!("malformed PKCS#1 RSA key: {e}"))),
        "EC PRIVATE KEY" => {
            if contains(&block.der, OID_P384_DER) {
                return p384::SecretKey::from_sec1_der(&block.der)
                    .map(|k| Key::P384(k.into()))
                    .map_err(|e| invalid(&format!("malformed SEC1 P-384 key: {e}")));
            }
            if !contains(&block.der, OID_P256_DER) {
                return Err(invalid("SEC1 key is not on P-256 or P-384"));
            }
            let pkcs8 = Zeroizing::new(sec1_p256_to_pkcs8(&block.der));
            let p256 = &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING;
            EcdsaKeyPair::from_pkcs8(p256, &pkcs8, &rng)
                .map(Key::P256)
                .map_err(|e| invalid(&format!("malformed SEC1 P-256 key: {e}")))
        }
        other => Err(invalid(&format!(
            "unsupported PEM block {other}; use PKCS#8, PKCS#1 or SEC1"
        ))),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` (RFC 5915, section 3) so
/// that ring, which reads only PKCS#8, can load it.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    let mut algorithm = vec![0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    algorithm.extend_from_slice(OID_P256_DER);
    let mut body = Zeroizing::new(vec![0x02, 0x01, 0x00]);
    crate::der::push_tlv(&mut body, 0x30, &algorithm);
    crate::der::push_tlv(&mut body, 0x04, sec1);
    let mut out = Vec::with_capacity(body.len() + 4);
    crate::der::push_tlv(&mut out, 0x30, &body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn pki(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/vectors/pki")
            .join(path)
    }

    fn open(cert: &str, key: &str, chain: Option<&str>) -> Result<FileSigner, Error> {
        let chain = chain.map(pki);
        FileSigner::open(&pki(cert), &pki(key), chain.as_deref())
    }

    #[test]
    fn file_signer_rsa_pkcs8_conforms() {
        let signer = open("rsa/leaf.pem", "rsa/leaf.key", Some("rsa/chain.pem")).unwrap();
        assert_eq!(signer.chain().len(), 1);
        crate::conformance::check(&signer).unwrap();
    }

    #[test]
    fn file_signer_rsa_pkcs1_conforms() {
        let signer = open("rsa/leaf.pem", "rsa/leaf.pkcs1.key", None).unwrap();
        crate::conformance::check(&signer).unwrap();
    }

    #[test]
    fn file_signer_ec_pkcs8_and_sec1_conform() {
        for key in ["ec/leaf.key", "ec/leaf.sec1.key"] {
            let signer = open("ec/leaf.pem", key, Some("ec/chain.pem")).unwrap();
            assert_eq!(signer.algorithm(), Algorithm::EcdsaSha256);
            crate::conformance::check(&signer).unwrap();
        }
    }

    #[test]
    fn file_signer_picks_leaf_from_full_chain() {
        let signer = open("rsa/leaf-fullchain.pem", "rsa/leaf.key", None).unwrap();
        assert!(
            signer
                .parsed_certificate()
                .subject()
                .contains("rsa-workload")
        );
        assert_eq!(signer.chain().len(), 1);
        crate::conformance::check(&signer).unwrap();
    }

    #[test]
    fn file_signer_rejects_mismatched_key() {
        let err = open("rsa/leaf.pem", "rsa/leaf-direct.key", None).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn file_signer_rejects_garbage_key() {
        let dir = std::env::temp_dir().join(format!("ra-signer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("garbage.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = FileSigner::open(&pki("rsa/leaf.pem"), &key, None).unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
        assert!(err.to_string().contains("garbage.key"), "{err}");
    }
}
