//! TPM key references: persistent handles (`handle:0x81000001`) and TSS2 private key
//! files (`-----BEGIN TSS2 PRIVATE KEY-----`, as tpm2-openssl and openssl_tpm2_engine
//! write them).
//!
//! The file contains the ASN.1 structure
//!
//! ```text
//! TPMKey ::= SEQUENCE {
//!     type        OBJECT IDENTIFIER,          -- 2.23.133.10.1.3: loadable key
//!     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
//!     policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
//!     secret      [2] EXPLICIT OCTET STRING OPTIONAL,
//!     ...         further context-tagged fields, OPTIONAL
//!     parent      INTEGER,                    -- a hierarchy or a persistent handle
//!     pubkey      OCTET STRING,               -- TPM2B_PUBLIC
//!     privkey     OCTET STRING                -- TPM2B_PRIVATE
//! }
//! ```

use std::path::{Path, PathBuf};

use tpm2_protocol::TpmUnmarshal;
use tpm2_protocol::data::{Tpm2bPublic, TpmtPublic};

use crate::error::TpmError;

/// DER contents of OID 2.23.133.10.1.3 (`id-loadablekey`).
const OID_LOADABLE_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0A, 0x01, 0x03];
/// DER contents of OID 2.23.133.10.1.4 (`id-importablekey`).
const OID_IMPORTABLE_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0A, 0x01, 0x04];
/// DER contents of OID 2.23.133.10.1.5 (`id-sealedkey`).
const OID_SEALED_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0A, 0x01, 0x05];

const PEM_LABEL: &str = "TSS2 PRIVATE KEY";

/// The owner (storage) hierarchy, `TPM_RH_OWNER`.
pub const RH_OWNER: u32 = 0x4000_0001;
/// The null hierarchy, `TPM_RH_NULL`; its keys do not survive a TPM reset.
pub const RH_NULL: u32 = 0x4000_0007;
/// The endorsement hierarchy, `TPM_RH_ENDORSEMENT`.
pub const RH_ENDORSEMENT: u32 = 0x4000_000B;

/// Returns whether `handle` is in the persistent object range (`TPM_HT_PERSISTENT`).
pub fn is_persistent(handle: u32) -> bool {
    handle >> 24 == 0x81
}

/// Returns whether `handle` names a hierarchy that can be a key file's parent.
pub fn is_hierarchy(handle: u32) -> bool {
    matches!(handle, RH_OWNER | RH_NULL | RH_ENDORSEMENT)
}

/// The location of a TPM key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeySource {
    /// A key made persistent with TPM2_EvictControl, at a `0x81xxxxxx` handle.
    Persistent(u32),
    /// A key blob from a TSS2 private key file, loaded under its parent for each use.
    File(Box<KeyFile>),
}

impl KeySource {
    /// Parses a `--private-key` value: `handle:0x81000101` (the `0x` is optional) or the
    /// path of a TSS2 private key file, PEM or DER, recognised by its content.
    pub fn parse(value: &str) -> Result<Self, TpmError> {
        if let Some(handle) = value.strip_prefix("handle:") {
            return parse_handle(handle)
                .map(KeySource::Persistent)
                .map_err(|reason| TpmError::InvalidKeySpec {
                    value: value.to_owned(),
                    reason,
                });
        }
        if value.is_empty() {
            return Err(TpmError::InvalidKeySpec {
                value: value.to_owned(),
                reason: "the value is empty".into(),
            });
        }
        KeyFile::read(Path::new(value)).map(|key| KeySource::File(Box::new(key)))
    }

    /// Describes the key for messages: `handle 0x81000101` or the file path.
    pub fn describe(&self) -> String {
        match self {
            KeySource::Persistent(handle) => format!("persistent key 0x{handle:08X}"),
            KeySource::File(key) => format!("key file {}", key.path.display()),
        }
    }
}

/// Returns whether `value` is a TPM key reference: a `handle:` value, or a file whose
/// content is a TSS2 private key. The agent can use this to pick the TPM signer.
pub fn is_tpm_key(value: &str) -> bool {
    if value.starts_with("handle:") {
        return true;
    }
    match std::fs::read(value) {
        Ok(bytes) => is_tss2_content(&bytes),
        Err(_) => false,
    }
}

fn is_tss2_content(bytes: &[u8]) -> bool {
    let marker = format!("-----BEGIN {PEM_LABEL}-----");
    if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        return true;
    }
    // DER: SEQUENCE, then the OID right after the length.
    bytes.first() == Some(&0x30)
        && bytes
            .windows(OID_LOADABLE_KEY.len() + 2)
            .take(8)
            .any(|w| w[0] == 0x06 && &w[2..] == OID_LOADABLE_KEY)
}

fn parse_handle(text: &str) -> Result<u32, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let handle = u32::from_str_radix(digits, 16)
        .map_err(|_| format!("{text:?} is not a hexadecimal handle"))?;
    if !is_persistent(handle) {
        return Err(format!(
            "0x{handle:08X} is not a persistent handle (0x81000000 to 0x81FFFFFF)"
        ));
    }
    Ok(handle)
}

/// A loadable key from a TSS2 private key file.
#[derive(Clone)]
pub struct KeyFile {
    /// The file the key came from.
    pub path: PathBuf,
    /// The `emptyAuth` flag: `true` when the key has no password.
    pub empty_auth: bool,
    /// The parent: a hierarchy (`0x40000001` owner, `0x4000000B` endorsement,
    /// `0x40000007` null) or a persistent key handle.
    pub parent: u32,
    /// The TPM2B_PUBLIC bytes, size field included.
    pub public_blob: Vec<u8>,
    /// The TPM2B_PRIVATE bytes, size field included.
    pub private_blob: Vec<u8>,
    /// The parsed public area.
    pub public: TpmtPublic,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("empty_auth", &self.empty_auth)
            .field("parent", &format_args!("0x{:08X}", self.parent))
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// Reads and parses a TSS2 private key file, PEM or DER.
    pub fn read(path: &Path) -> Result<Self, TpmError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TpmError::KeyFileIo {
            path: shown.clone(),
            source,
        })?;
        let invalid = |reason: String| TpmError::InvalidKeyFile {
            path: shown.clone(),
            reason,
        };
        let der = if bytes.first() == Some(&0x30) {
            zeroize::Zeroizing::new(bytes)
        } else {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| invalid("neither PEM text nor DER".into()))?;
            let blocks = ra_signer::pem::parse(text).map_err(invalid)?;
            let labels: Vec<String> = blocks.iter().map(|b| b.label.clone()).collect();
            let Some(block) = blocks.into_iter().find(|b| b.label == PEM_LABEL) else {
                return Err(invalid(if labels.is_empty() {
                    "no PEM block found".into()
                } else {
                    format!(
                        "no {PEM_LABEL} block (found {}); a software key needs no \
                         --tpm-device",
                        labels.join(", ")
                    )
                }));
            };
            block.der
        };
        Self::from_der(&der, path).map_err(invalid)
    }

    /// Parses the DER `TPMKey` structure; `path` is recorded for messages.
    pub fn from_der(der: &[u8], path: &Path) -> Result<Self, String> {
        let mut outer = Der::new(der);
        let mut seq = Der::new(outer.expect(0x30, "TPMKey SEQUENCE")?);
        if !outer.is_empty() {
            return Err("trailing bytes after the TPMKey SEQUENCE".into());
        }
        let oid = seq.expect(0x06, "key type OID")?;
        if oid == OID_IMPORTABLE_KEY {
            return Err("importable keys (2.23.133.10.1.4) are not supported; \
                        import the key with tpm2_import first"
                .into());
        }
        if oid == OID_SEALED_KEY {
            return Err("this is sealed data (2.23.133.10.1.5), not a signing key".into());
        }
        if oid != OID_LOADABLE_KEY {
            return Err("key type is not the loadable key OID 2.23.133.10.1.3".into());
        }

        let mut empty_auth = false;
        while let Some(tag) = seq.peek() {
            if tag & 0xE0 != 0xA0 {
                break;
            }
            let number = tag & 0x1F;
            let content = seq.expect(tag, "tagged field")?;
            match number {
                0 => {
                    let mut inner = Der::new(content);
                    let value = inner.expect(0x01, "emptyAuth BOOLEAN")?;
                    empty_auth = value.first().is_some_and(|&b| b != 0);
                }
                1 => {
                    return Err("keys with an authorization policy are not supported; \
                                create the key without a policy"
                        .into());
                }
                2 => return Err("keys with an import secret are not supported".into()),
                3 => return Err("keys with signed authorization policies are not supported".into()),
                5 => {
                    let mut inner = Der::new(content);
                    let rsa_parent = inner.expect(0x01, "rsaParent BOOLEAN")?;
                    if rsa_parent.first().is_some_and(|&b| b != 0) {
                        return Err("keys under an RSA storage primary (rsaParent) are not \
                                    supported; create the key under the ECC P-256 primary"
                            .into());
                    }
                }
                // Other fields (such as [4] description) do not change how the key loads.
                _ => {}
            }
        }

        let parent = parse_uint(seq.expect(0x02, "parent INTEGER")?)?;
        if !is_hierarchy(parent) && !is_persistent(parent) {
            return Err(format!(
                "parent 0x{parent:08X} is neither a hierarchy (owner 0x40000001, \
                 endorsement 0x4000000B, null 0x40000007) nor a persistent handle"
            ));
        }
        let public_blob = seq.expect(0x04, "pubkey OCTET STRING")?.to_vec();
        let private_blob = seq.expect(0x04, "privkey OCTET STRING")?.to_vec();
        if !seq.is_empty() {
            return Err("unexpected fields after privkey".into());
        }

        let (public, rest) = Tpm2bPublic::unmarshal(&public_blob)
            .map_err(|e| format!("pubkey is not a TPM2B_PUBLIC: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the TPM2B_PUBLIC in pubkey".into());
        }
        let private_len = private_blob
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        if private_len.map(|len| len + 2) != Some(private_blob.len()) {
            return Err("privkey is not a TPM2B_PRIVATE (size field mismatch)".into());
        }

        Ok(KeyFile {
            path: path.to_owned(),
            empty_auth,
            parent,
            public_blob,
            private_blob,
            public: public.inner,
        })
    }
}

fn parse_uint(bytes: &[u8]) -> Result<u32, String> {
    let trimmed = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    };
    if bytes.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err("parent INTEGER is negative".into());
    }
    if trimmed.is_empty() || trimmed.len() > 4 {
        return Err("parent INTEGER does not fit a TPM handle".into());
    }
    Ok(trimmed
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// A minimal DER reader: tag, definite length, contents.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element with tag `tag` and returns its contents.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let truncated = || format!("{what} is truncated");
        let (&found, rest) = self.rest.split_first().ok_or_else(truncated)?;
        if found != tag {
            return Err(format!(
                "expected {what} (tag 0x{tag:02X}), found tag 0x{found:02X}"
            ));
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 3 || rest.len() < count {
                return Err(format!("{what} has an unsupported length encoding"));
            }
            let (len_bytes, tail) = rest.split_at(count);
            rest = tail;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (content, tail) = rest.split_at(len);
        self.rest = tail;
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_handle_forms() {
        assert_eq!(parse_handle("0x81000101"), Ok(0x8100_0101));
        assert_eq!(parse_handle("81000101"), Ok(0x8100_0101));
        assert!(
            parse_handle("0x40000001")
                .unwrap_err()
                .contains("not a persistent")
        );
        assert!(
            parse_handle("zz")
                .unwrap_err()
                .contains("not a hexadecimal")
        );
    }

    #[test]
    fn key_source_rejects_bad_handle() {
        let error = KeySource::parse("handle:0x80000001").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("handle:0x80000001"), "{message}");
        assert!(message.contains("not a persistent handle"), "{message}");
    }

    #[test]
    fn parse_uint_handles_sign_padding() {
        assert_eq!(parse_uint(&[0x00, 0x81, 0, 0, 1]), Ok(0x8100_0001));
        assert_eq!(parse_uint(&[0x40, 0, 0, 1]), Ok(0x4000_0001));
        assert!(parse_uint(&[0x81, 0, 0, 1]).is_err());
        assert!(parse_uint(&[1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn from_der_rejects_wrong_oid() {
        let der = [0x30, 0x05, 0x06, 0x03, 0x2A, 0x03, 0x04];
        let error = KeyFile::from_der(&der, Path::new("k")).unwrap_err();
        assert!(error.contains("2.23.133.10.1.3"), "{error}");
    }
}
