//! TPM keys with certificates for the end-to-end tests, and the agent flags that select
//! them.

use std::path::PathBuf;

use super::{Ca, Swtpm};
use crate::common::args;

/// The persistent storage key that key files use as their parent, without a password.
pub const PARENT: u32 = 0x8100_0001;
/// A persistent storage key with a password, as the parent of key files.
pub const PARENT_WITH_PASSWORD: u32 = 0x8100_0002;
pub const PARENT_PASSWORD: &str = "parent pw";

/// Where a test key lives.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// Made with tpm2_create (`rsa2048`, `ecc256`, `ecc384`) and made persistent.
    Persistent {
        algorithm: &'static str,
        handle: u32,
    },
    /// A TSS2 key file from `openssl genpkey -provider tpm2 -algorithm ALGORITHM
    /// -pkeyopt OPTION`.
    File {
        algorithm: &'static str,
        option: &'static str,
        parent: Parent,
    },
}

/// The parent of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The storage primary key under the owner hierarchy, recreated by the signer.
    Owner,
    /// [`PARENT`], made by the test with [`Swtpm::persistent_parent`] before the key.
    Persistent,
    /// [`PARENT_WITH_PASSWORD`], made the same way, so the agent needs
    /// `--tpm-parent-password-file`.
    PersistentWithPassword,
}

/// A key in the TPM with its certificate.
pub struct Fixture {
    /// The `--private-key` value: `handle:0x...` or the key file path.
    pub key_spec: String,
    pub certificate: PathBuf,
}

/// Creates `key` with `password` and issues its certificate into a file with the leaf
/// alone, so the agent needs `--intermediates`.
pub fn create_fixture(
    swtpm: &Swtpm,
    name: &str,
    key: Key,
    password: Option<&str>,
    ca: Ca,
) -> Fixture {
    create_fixture_with_chain(swtpm, name, key, password, ca, false)
}

/// [`create_fixture`], with the intermediate appended to the certificate file when
/// `chain_in_certificate` is set.
pub fn create_fixture_with_chain(
    swtpm: &Swtpm,
    name: &str,
    key: Key,
    password: Option<&str>,
    ca: Ca,
    chain_in_certificate: bool,
) -> Fixture {
    let (key_spec, public) = match key {
        Key::Persistent { algorithm, handle } => {
            let public = swtpm.persistent_key(algorithm, handle, password);
            (format!("handle:0x{handle:08x}"), public)
        }
        Key::File {
            algorithm,
            option,
            parent,
        } => {
            let parent = match parent {
                Parent::Owner => None,
                Parent::Persistent => Some((PARENT, None)),
                Parent::PersistentWithPassword => {
                    Some((PARENT_WITH_PASSWORD, Some(PARENT_PASSWORD)))
                }
            };
            let (file, public) = swtpm.key_file(name, algorithm, &[option], password, parent);
            (file.display().to_string(), public)
        }
    };
    let certificate = swtpm.issue_certificate(
        &public,
        ca,
        &format!("ra-agent tpm {name}"),
        chain_in_certificate,
    );
    Fixture {
        key_spec,
        certificate,
    }
}

/// Writes `password` and a trailing newline (which the agent strips) to a file and
/// returns its path.
pub fn password_file(swtpm: &Swtpm, name: &str, password: &str) -> String {
    let path = swtpm.path(&format!("{name}.password"));
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.display().to_string()
}

/// Returns the arguments that select the TPM key, its certificate and the device.
pub fn tpm_args(
    swtpm: &Swtpm,
    fixture: &Fixture,
    ca: Ca,
    chain_in_certificate: bool,
) -> Vec<String> {
    let mut list = args(&[
        "--certificate",
        fixture.certificate.to_str().unwrap(),
        "--private-key",
        &fixture.key_spec,
        "--tpm-device",
        &swtpm.device(),
    ]);
    if !chain_in_certificate {
        list.extend(args(&["--intermediates", ca.chain().to_str().unwrap()]));
    }
    list
}
