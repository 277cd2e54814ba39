//! The [`TpmSigner`]: a TPM key plus its certificate, implementing [`Signer`].

use std::fmt;
use std::sync::Mutex;

use ra_signer::{Algorithm, Certificate, Signer};
use ring::digest;
use tpm2_protocol::data::{
    Tpm2bDigest, TpmAlgId, TpmEccCurve, TpmaObject, TpmsEccParms, TpmsEccPoint, TpmtEccScheme,
    TpmtKdfScheme, TpmtPublic, TpmtSignature, TpmtSymDef, TpmuPublicId, TpmuPublicParms,
    TpmuSignature, TpmuSymKeyBits, TpmuSymMode,
};
use zeroize::Zeroizing;

use crate::address::{Connect, TpmAddress};
use crate::error::TpmError;
use crate::keyfile::{KeyFile, KeySource, is_hierarchy};
use crate::public::{KeyProfile, profile};
use crate::rc::{RcIndex, codes};
use crate::tpm::{Failure, Tpm};

/// Passwords for a TPM key and the objects above it. `None` and an empty value both
/// mean "no password". Values are zeroized on drop and never printed.
#[derive(Default, Clone)]
#[non_exhaustive]
pub struct TpmAuth {
    /// The key's own authorization value (tpm2-tools `-p`, tpm2-openssl `user-auth`).
    pub key: Option<Zeroizing<Vec<u8>>>,
    /// The authorization value of a persistent parent key named in a key file.
    pub parent: Option<Zeroizing<Vec<u8>>>,
    /// The hierarchy authorization (owner password, `tpm2_changeauth -c o`), used to
    /// recreate the storage primary key when a key file's parent is a hierarchy.
    pub hierarchy: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for TpmAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |value: &Option<Zeroizing<Vec<u8>>>| match value {
            Some(v) if !v.is_empty() => "<set>",
            _ => "<none>",
        };
        f.debug_struct("TpmAuth")
            .field("key", &shown(&self.key))
            .field("parent", &shown(&self.parent))
            .field("hierarchy", &shown(&self.hierarchy))
            .finish()
    }
}

impl TpmAuth {
    /// Returns the "no password anywhere" value.
    pub fn no_password() -> Self {
        TpmAuth::default()
    }

    /// Sets the key password.
    pub fn with_key_password(mut self, password: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Zeroizing::new(password.into()));
        self
    }

    /// Sets the password of a persistent parent key.
    pub fn with_parent_password(mut self, password: impl Into<Vec<u8>>) -> Self {
        self.parent = Some(Zeroizing::new(password.into()));
        self
    }

    /// Sets the hierarchy password.
    pub fn with_hierarchy_password(mut self, password: impl Into<Vec<u8>>) -> Self {
        self.hierarchy = Some(Zeroizing::new(password.into()));
        self
    }

    fn value(field: &Option<Zeroizing<Vec<u8>>>) -> &[u8] {
        field.as_deref().map_or(&[], |v| v.as_slice())
    }
}

/// A TPM 2.0 key bound to an X.509 certificate.
///
/// Each [`Signer::sign`] call opens a connection and, for a key file, loads the key
/// (after recreating the storage primary key when the parent is a hierarchy). It then
/// signs the SHA-256 digest of the message, flushes every transient object it loaded,
/// and closes the connection. Calls on one signer are serialized.
pub struct TpmSigner {
    connector: Box<dyn Connect>,
    key: KeySource,
    auth: TpmAuth,
    profile: KeyProfile,
    certificate: Certificate,
    chain: Vec<Vec<u8>>,
    lock: Mutex<()>,
}

impl fmt::Debug for TpmSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmSigner")
            .field("tpm", &self.connector.describe())
            .field("key", &self.key.describe())
            .field("kind", &self.profile.kind)
            .field("subject", &self.certificate.subject())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TpmSigner {
    /// Opens the key `private_key` (`handle:0x81000101` or a TSS2 key file path) on the
    /// TPM at `tpm_device` (see [`TpmAddress::parse`]; empty means `/dev/tpmrm0`).
    /// See [`TpmSigner::new`] for the checks made.
    pub fn open(
        tpm_device: &str,
        private_key: &str,
        auth: TpmAuth,
        certificate: Certificate,
        chain: Vec<Vec<u8>>,
    ) -> Result<Self, ra_signer::Error> {
        let address = TpmAddress::parse(tpm_device)?;
        let key = KeySource::parse(private_key)?;
        TpmSigner::new(Box::new(address), key, auth, certificate, chain)
    }

    /// Builds a signer and checks it before returning:
    ///
    /// - a key file's `emptyAuth` flag agrees with whether a key password was given;
    /// - the key's public area allows RSASSA or ECDSA with SHA-256 on RSA 2048+ bits,
    ///   P-256 or P-384;
    /// - the key's public key is the certificate's (else [`ra_signer::Error::KeyMismatch`]);
    /// - one probe signature verifies with the certificate, which also proves the
    ///   passwords and, for a key file, that the blob loads on this TPM.
    ///
    /// `chain` contains the intermediate certificates, DER, the issuer of the leaf first.
    pub fn new(
        connector: Box<dyn Connect>,
        key: KeySource,
        auth: TpmAuth,
        certificate: Certificate,
        chain: Vec<Vec<u8>>,
    ) -> Result<Self, ra_signer::Error> {
        let public = match &key {
            KeySource::File(file) => {
                check_password_policy(file, &auth)?;
                file.public.clone()
            }
            KeySource::Persistent(handle) => read_persistent_public(&*connector, *handle)?,
        };
        let profile = profile(&public)?;
        let what = format!("{} ({})", certificate.subject(), key.describe());
        if profile.kind != certificate.key_kind()
            || profile.public_key.as_slice() != certificate.public_key()
        {
            return Err(ra_signer::Error::KeyMismatch { certificate: what });
        }
        let signer = TpmSigner {
            connector,
            key,
            auth,
            profile,
            certificate,
            chain,
            lock: Mutex::new(()),
        };
        ra_signer::check_key_matches(&signer, &what)?;
        Ok(signer)
    }

    /// Returns the parsed end-entity certificate.
    pub fn parsed_certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Returns the key location, for messages.
    pub fn key_description(&self) -> String {
        self.key.describe()
    }

    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, TpmError> {
        // A poisoned lock only means another signature panicked; the TPM state is
        // owned by each call's own connection, so carry on.
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut tpm = Tpm::connect(&*self.connector)?;
        let handle = match &self.key {
            KeySource::Persistent(handle) => *handle,
            KeySource::File(file) => load_key_file(&mut tpm, file, &self.auth)?,
        };
        let signature = tpm
            .sign(
                handle,
                TpmAuth::value(&self.auth.key),
                digest,
                self.profile.scheme,
                TpmAlgId::Sha256,
            )
            .map_err(|failure| match failure {
                Failure::Tpm(rc)
                    if matches!(&self.key, KeySource::Persistent(_))
                        && rc.base() == codes::HANDLE
                        && rc.index() == Some(RcIndex::Handle(1)) =>
                {
                    TpmError::HandleNotFound { handle, rc }
                }
                other => other.into_error("TPM2_Sign", &self.key.describe()),
            })?;
        drop(tpm);
        self.encode(signature)
    }

    fn encode(&self, signature: TpmtSignature) -> Result<Vec<u8>, TpmError> {
        let malformed = |reason: &str| TpmError::Protocol {
            command: "TPM2_Sign",
            reason: reason.to_owned(),
        };
        match (signature.signature, self.profile.ecdsa_scalar_len()) {
            (TpmuSignature::Rsassa(rsa), None) => {
                let ra_signer::KeyKind::Rsa { bits } = self.profile.kind else {
                    return Err(malformed("RSA signature from a non-RSA key"));
                };
                let len = bits.div_ceil(8);
                let sig = &rsa.sig[..];
                if sig.len() > len {
                    return Err(malformed("RSA signature longer than the modulus"));
                }
                let mut out = vec![0u8; len - sig.len()];
                out.extend_from_slice(sig);
                Ok(out)
            }
            (TpmuSignature::Ecdsa(ecc), Some(len)) => {
                let (r, s) = (&ecc.signature_r[..], &ecc.signature_s[..]);
                if r.len() > len || s.len() > len {
                    return Err(malformed("ECDSA r or s longer than the curve size"));
                }
                let mut raw = vec![0u8; 2 * len];
                raw[len - r.len()..len].copy_from_slice(r);
                raw[2 * len - s.len()..].copy_from_slice(s);
                ra_signer::ecdsa_raw_to_der(&raw).ok_or_else(|| malformed("empty ECDSA signature"))
            }
            _ => Err(malformed(
                "signature algorithm differs from the requested scheme",
            )),
        }
    }
}

impl Signer for TpmSigner {
    fn certificate(&self) -> &[u8] {
        self.certificate.der()
    }

    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn algorithm(&self) -> Algorithm {
        self.profile.algorithm()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ra_signer::Error> {
        let digest = digest::digest(&digest::SHA256, message);
        self.sign_digest(digest.as_ref())
            .map_err(|error| ra_signer::Error::Backend {
                // The TPM error names the key and the command already.
                context: "TPM signing failed".into(),
                source: Box::new(error),
            })
    }
}

fn check_password_policy(file: &KeyFile, auth: &TpmAuth) -> Result<(), TpmError> {
    let has_password = !TpmAuth::value(&auth.key).is_empty();
    let path = file.path.display().to_string();
    if file.empty_auth && has_password {
        return Err(TpmError::PasswordPolicy {
            path,
            reason: "the key file declares no password (emptyAuth), but a key password was \
                     given; drop the key password option"
                .into(),
        });
    }
    if !file.empty_auth && !has_password {
        return Err(TpmError::PasswordPolicy {
            path,
            reason: "the key has a password (emptyAuth is false), but no key password was \
                     given"
                .into(),
        });
    }
    Ok(())
}

fn read_persistent_public(connector: &dyn Connect, handle: u32) -> Result<TpmtPublic, TpmError> {
    let mut tpm = Tpm::connect(connector)?;
    tpm.read_public(handle).map_err(|failure| match failure {
        Failure::Tpm(rc) if matches!(rc.base(), codes::HANDLE | codes::VALUE) => {
            TpmError::HandleNotFound { handle, rc }
        }
        other => other.into_error("TPM2_ReadPublic", &format!("0x{handle:08X}")),
    })
}

/// Loads a key file's blob and returns the transient handle of the key. Transient
/// objects are registered with `tpm`, which flushes them when it is dropped.
fn load_key_file(tpm: &mut Tpm, file: &KeyFile, auth: &TpmAuth) -> Result<u32, TpmError> {
    let parent = file.parent;
    let (parent_handle, parent_auth, primary) = if is_hierarchy(parent) {
        let primary = tpm
            .create_primary(
                parent,
                TpmAuth::value(&auth.hierarchy),
                storage_primary_template(),
            )
            .map_err(|f| f.into_error("TPM2_CreatePrimary", &hierarchy_name(parent)))?;
        (primary, &[][..], Some(primary))
    } else {
        (parent, TpmAuth::value(&auth.parent), None)
    };
    let loaded = tpm
        .load(
            parent_handle,
            parent_auth,
            &file.private_blob,
            &file.public_blob,
        )
        .map_err(|failure| match failure {
            Failure::Tpm(rc) if rc.base() == codes::INTEGRITY => {
                TpmError::KeyBlobRejected { parent, rc }
            }
            Failure::Tpm(rc)
                if primary.is_none()
                    && matches!(rc.base(), codes::HANDLE | codes::VALUE)
                    && rc.index() == Some(RcIndex::Handle(1)) =>
            {
                TpmError::HandleNotFound { handle: parent, rc }
            }
            other => other.into_error("TPM2_Load", &format!("parent 0x{parent:08X}")),
        })?;
    if let Some(primary) = primary {
        // The loaded key stays usable without its parent; freeing the slot now matters
        // on TPMs without a resource manager, which hold only three transient objects.
        tpm.flush(primary)
            .map_err(|f| f.into_error("TPM2_FlushContext", "the storage primary key"))?;
    }
    Ok(loaded)
}

fn hierarchy_name(handle: u32) -> String {
    let name = match handle {
        crate::keyfile::RH_OWNER => "owner",
        crate::keyfile::RH_ENDORSEMENT => "endorsement",
        _ => "null",
    };
    format!("the {name} hierarchy 0x{handle:08X} (hierarchy password)")
}

/// Returns the template of the ECC P-256 storage primary key that tpm2-openssl creates
/// under a hierarchy as the parent of its key files. It is a restricted decryption key
/// with AES-128-CFB, null scheme and KDF, NIST P-256 and an empty unique field; the
/// key-file tests check it against keys made by tpm2-openssl 1.1.
///
/// The TPM derives a primary key from the hierarchy seed and this exact template, so any
/// difference yields another key and TPM2_Load fails with TPM_RC_INTEGRITY.
pub(crate) fn storage_primary_template() -> TpmtPublic {
    TpmtPublic {
        object_type: TpmAlgId::Ecc,
        name_alg: TpmAlgId::Sha256,
        object_attributes: TpmaObject::FIXED_TPM
            | TpmaObject::FIXED_PARENT
            | TpmaObject::SENSITIVE_DATA_ORIGIN
            | TpmaObject::USER_WITH_AUTH
            | TpmaObject::NO_DA
            | TpmaObject::RESTRICTED
            | TpmaObject::DECRYPT,
        auth_policy: Tpm2bDigest::default(),
        parameters: TpmuPublicParms::Ecc(TpmsEccParms {
            symmetric: TpmtSymDef {
                algorithm: TpmAlgId::Aes,
                key_bits: TpmuSymKeyBits::Aes(128.into()),
                mode: TpmuSymMode::Aes(TpmAlgId::Cfb),
            },
            scheme: TpmtEccScheme::default(),
            curve_id: TpmEccCurve::NistP256,
            kdf: TpmtKdfScheme::default(),
        }),
        unique: TpmuPublicId::Ecc(TpmsEccPoint::default()),
    }
}
