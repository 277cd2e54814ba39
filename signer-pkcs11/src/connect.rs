//! The steps that reach a key: load the module, open a session, log in, and find the
//! certificate and private key objects.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::object::KeyType;
use cryptoki::session::{Session, UserType};
use cryptoki::types::RawAuthPin;
use ra_signer::{Certificate, KeyKind};
use zeroize::Zeroizing;

use crate::error::{Error, call_error};
use crate::mechanism::SignMechanism;
use crate::objects::{
    self, CertificateObject, KeyObject, describe_object, describe_search, find_certificates,
    find_private_keys,
};
use crate::token::SelectedToken;

/// Loads and initialises a module. A module that another part of the process has
/// initialised already is fine (`CKR_CRYPTOKI_ALREADY_INITIALIZED`).
pub(crate) fn load_module(path: &Path) -> Result<Pkcs11, Error> {
    let load_error = |source| Error::ModuleLoad {
        path: path.to_owned(),
        source,
    };
    let pkcs11 = Pkcs11::new(path).map_err(load_error)?;
    initialize(&pkcs11).map_err(load_error)?;
    log::debug!("loaded PKCS#11 module {}", path.display());
    Ok(pkcs11)
}

/// Calls `C_Initialize` with OS locking, tolerating an earlier initialisation.
pub(crate) fn initialize(pkcs11: &Pkcs11) -> Result<(), CkError> {
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Opens a read-only session, which is enough to log in as the user and sign.
pub(crate) fn open_session(pkcs11: &Pkcs11, token: &SelectedToken) -> Result<Session, Error> {
    pkcs11
        .open_ro_session(token.slot)
        .map_err(|e| call_error(format!("opening a session on {}", token.name()), "", e))
}

/// Logs the user in with `pin`, or through the token's PIN pad when the token has a
/// protected authentication path and no PIN was given. A login that another session of
/// this process already has counts as success.
pub(crate) fn login(
    session: &Session,
    token: &SelectedToken,
    pin: Option<&Zeroizing<String>>,
) -> Result<(), Error> {
    let name = token.name();
    // NOTE: SoftHSM 2.6.1 never locks the user PIN, so the tests cannot reach this branch
    // or CKR_PIN_LOCKED.
    if token.flags.user_pin_locked {
        return Err(Error::PinLocked {
            token: name,
            source: None,
        });
    }
    if token.flags.user_pin_final_try {
        log::warn!("{name} allows one more user PIN attempt before it locks");
    } else if token.flags.user_pin_count_low {
        log::warn!("{name} reports failed user PIN attempts since the last good login");
    }
    let result = match pin {
        Some(pin) => {
            let pin = RawAuthPin::new(Box::new(pin.as_bytes().to_vec()));
            session.login_with_raw(UserType::User, &pin)
        }
        None if token.flags.protected_authentication_path => {
            log::info!("logging in to {name} through its protected authentication path");
            session.login(UserType::User, None)
        }
        None => return Err(Error::PinRequired { token: name }),
    };
    match result {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
            log::debug!("logged in to {name}");
            Ok(())
        }
        Err(error) => Err(call_error(format!("logging in to {name}"), &name, error)),
    }
}

/// Returns whether a login could be attempted: a PIN or a PIN pad is available.
pub(crate) fn can_login(token: &SelectedToken, pin: Option<&Zeroizing<String>>) -> bool {
    pin.is_some() || token.flags.protected_authentication_path
}

/// Finds the one certificate that matches `id` and `label`. Certificates are usually
/// public, so the search runs before login first, and once more after login when the
/// first search finds nothing.
pub(crate) fn find_certificate(
    session: &Session,
    token: &SelectedToken,
    id: Option<&[u8]>,
    label: Option<&[u8]>,
    pin: Option<&Zeroizing<String>>,
    logged_in: &mut bool,
) -> Result<CertificateObject, Error> {
    let name = token.name();
    let searched = describe_search("certificate", id, label);
    let search = |session: &Session| {
        find_certificates(session, id, label)
            .map_err(|e| call_error(format!("searching {name} for a {searched}"), &name, e))
    };
    let mut all = search(session)?;
    if all.is_empty() && !*logged_in && can_login(token, pin) {
        log::debug!("no {searched} visible before login on {name}; logging in");
        login(session, token, pin)?;
        *logged_in = true;
        all = search(session)?;
    }
    // The same certificate stored twice (say under two labels) is not ambiguous.
    let mut found: Vec<CertificateObject> = Vec::new();
    for certificate in all {
        if !found.iter().any(|seen| seen.der == certificate.der) {
            found.push(certificate);
        }
    }
    match found.len() {
        0 => {
            let available = find_certificates(session, None, None)
                .map(|all| {
                    all.iter()
                        .map(|c| format!("certificate {}", describe_object(&c.id, &c.label)))
                        .collect()
                })
                .unwrap_or_default();
            Err(Error::ObjectNotFound {
                object: searched,
                token: name,
                available,
            })
        }
        1 => Ok(found.remove(0)),
        _ => Err(Error::AmbiguousObject {
            object: searched,
            token: name,
            matched: found
                .iter()
                .map(|c| format!("certificate {}", describe_object(&c.id, &c.label)))
                .collect(),
        }),
    }
}

/// How to find the private key: by `id` and `label`, then by `fallback_label` alone
/// when the first search finds nothing.
#[derive(Debug, Clone)]
pub(crate) struct KeyLookup {
    pub(crate) id: Option<Vec<u8>>,
    pub(crate) label: Option<Vec<u8>>,
    pub(crate) fallback_label: Option<Vec<u8>>,
}

impl KeyLookup {
    /// Derives the lookup from the certificate: its `CKA_ID`, with its `CKA_LABEL` as
    /// fallback. An empty attribute is treated as absent.
    pub(crate) fn from_certificate(certificate: &CertificateObject) -> Self {
        let non_empty = |value: &[u8]| (!value.is_empty()).then(|| value.to_vec());
        match non_empty(&certificate.id) {
            Some(id) => KeyLookup {
                id: Some(id),
                label: None,
                fallback_label: non_empty(&certificate.label),
            },
            None => KeyLookup {
                id: None,
                label: non_empty(&certificate.label),
                fallback_label: None,
            },
        }
    }

    fn describe(&self) -> String {
        let primary = describe_search("private key", self.id.as_deref(), self.label.as_deref());
        match &self.fallback_label {
            Some(label) => format!("{primary} (nor one with label {:?})", objects::lossy(label)),
            None => primary,
        }
    }
}

/// Finds the one private key `lookup` names.
pub(crate) fn find_key(
    session: &Session,
    token: &SelectedToken,
    lookup: &KeyLookup,
) -> Result<KeyObject, Error> {
    let name = token.name();
    let search = |id: Option<&[u8]>, label: Option<&[u8]>| {
        find_private_keys(session, id, label).map_err(|e| {
            call_error(
                format!(
                    "searching {name} for a {}",
                    describe_search("private key", id, label)
                ),
                &name,
                e,
            )
        })
    };
    let mut found = search(lookup.id.as_deref(), lookup.label.as_deref())?;
    if found.is_empty()
        && let Some(label) = &lookup.fallback_label
    {
        log::debug!(
            "no private key with id {} on {name}; trying label {:?}",
            objects::hex(lookup.id.as_deref().unwrap_or_default()),
            objects::lossy(label)
        );
        found = search(None, Some(label))?;
    }
    match found.len() {
        0 => {
            let available = find_private_keys(session, None, None)
                .map(|all| {
                    all.iter()
                        .map(|k| format!("private key {}", describe_object(&k.id, &k.label)))
                        .collect()
                })
                .unwrap_or_default();
            Err(Error::ObjectNotFound {
                object: lookup.describe(),
                token: name,
                available,
            })
        }
        1 => Ok(found.remove(0)),
        _ => Err(Error::AmbiguousObject {
            object: lookup.describe(),
            token: name,
            matched: found
                .iter()
                .map(|k| format!("private key {}", describe_object(&k.id, &k.label)))
                .collect(),
        }),
    }
}

/// DER `OBJECT IDENTIFIER`s of the named curves, as `CKA_EC_PARAMS` contains them.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Checks that the key's type, and for EC keys its curve, fit the certificate's public
/// key. Attributes the token does not report are left to the probe signature.
pub(crate) fn check_key_type(
    key: &KeyObject,
    kind: KeyKind,
    certificate: &str,
) -> Result<(), Error> {
    let type_fits = match key.key_type {
        None => true,
        Some(key_type) => match kind {
            KeyKind::Rsa { .. } => key_type == KeyType::RSA,
            _ => key_type == KeyType::EC,
        },
    };
    let curve_fits = match (kind, key.ec_params.as_deref()) {
        (KeyKind::P256, Some(params @ (P256_PARAMS | P384_PARAMS))) => params == P256_PARAMS,
        (KeyKind::P384, Some(params @ (P256_PARAMS | P384_PARAMS))) => params == P384_PARAMS,
        _ => true,
    };
    let fits = type_fits && curve_fits;
    if fits {
        Ok(())
    } else {
        Err(Error::KeyMismatch {
            certificate: certificate.to_owned(),
            key: format!(
                "private key {} (type {:?})",
                describe_object(&key.id, &key.label),
                key.key_type
            ),
        })
    }
}

/// The mechanisms [`SignMechanism::choose`] considers.
const CANDIDATE_MECHANISMS: [MechanismType; 4] = [
    MechanismType::SHA256_RSA_PKCS,
    MechanismType::RSA_PKCS,
    MechanismType::ECDSA,
    MechanismType::ECDSA_SHA256,
];

/// Picks the signing mechanism. Each candidate is queried with `C_GetMechanismInfo`
/// rather than reading the whole `C_GetMechanismList`, which cryptoki 0.12 logs an
/// error for every mechanism type it does not know.
pub(crate) fn choose_mechanism(
    pkcs11: &Pkcs11,
    token: &SelectedToken,
    kind: KeyKind,
    key: &KeyObject,
) -> Result<SignMechanism, Error> {
    let mut offered = Vec::new();
    let mut known = true;
    for mechanism in CANDIDATE_MECHANISMS {
        match pkcs11.get_mechanism_info(token.slot, mechanism) {
            Ok(info) if info.sign() => offered.push(mechanism),
            Ok(_) | Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {}
            Err(error) => {
                log::warn!(
                    "cannot read mechanism information from {}: {error}; assuming the usual \
                     mechanisms",
                    token.name()
                );
                known = false;
                break;
            }
        }
    }
    let available = known.then_some(offered.as_slice());
    SignMechanism::choose(kind, available, key.always_authenticate).map_err(|reason| {
        Error::UnsupportedMechanism {
            token: token.name(),
            reason,
        }
    })
}

/// Reads every X.509 certificate on the token as a chain candidate. Certificates that do
/// not parse or use key types Roles Anywhere rejects are skipped.
pub(crate) fn token_certificates(session: &Session, token: &SelectedToken) -> Vec<Certificate> {
    let all = match find_certificates(session, None, None) {
        Ok(all) => all,
        Err(error) => {
            log::warn!(
                "cannot list the certificates on {} for the chain: {error}",
                token.name()
            );
            return Vec::new();
        }
    };
    all.into_iter()
        .filter_map(|object| {
            let described = format!("certificate {}", describe_object(&object.id, &object.label));
            match Certificate::from_der(object.der, &described) {
                Ok(certificate) => Some(certificate),
                Err(error) => {
                    log::debug!(
                        "skipping {described} on {} as a chain candidate: {error}",
                        token.name()
                    );
                    None
                }
            }
        })
        .collect()
}
