use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cryptoki::context::{Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::Session;
use ra_signer::{Algorithm, Certificate, Signer};
use zeroize::Zeroizing;

use crate::config::{CertificateSource, Pkcs11Config};
use crate::connect::{self, KeyLookup};
use crate::error::{Error, TokenSummary, from_signer_error};
use crate::mechanism::SignMechanism;
use crate::objects::{KeyObject, describe_object};
use crate::token::{self, SelectedToken};
use crate::uri::Pkcs11Uri;

/// A [`Signer`] whose private key stays on a PKCS#11 token.
///
/// The signer keeps one session open and serialises signatures through it. When the
/// session or token goes away (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`,
/// `CKR_DEVICE_REMOVED`, `CKR_TOKEN_NOT_PRESENT` and similar), the next signature
/// selects the token again by its URI attributes, logs in, finds the key and retries,
/// once. The first signature after such a reconnect is verified against the certificate,
/// so a different key under the same ID is caught. A PIN the token rejected is never
/// sent again: later signatures fail with [`Error::PinIncorrect`] until the signer is
/// opened anew.
pub struct Pkcs11Signer {
    pkcs11: Pkcs11,
    module: PathBuf,
    key_filter: Pkcs11Uri,
    key_lookup: KeyLookup,
    pin: Option<Zeroizing<String>>,
    reuse_pin: bool,
    certificate: Certificate,
    certificate_name: String,
    chain: Vec<Vec<u8>>,
    state: Mutex<State>,
}

struct State {
    live: Option<Live>,
    /// The PIN failure that stops all further logins, once one happened.
    pin_rejected: Option<PinFailure>,
    last_token: Option<TokenSummary>,
}

/// A rejected or locked PIN, remembered so it is never sent again.
#[derive(Debug, Clone)]
struct PinFailure {
    token: String,
    locked: bool,
}

impl PinFailure {
    fn to_error(&self) -> Error {
        let token = self.token.clone();
        if self.locked {
            Error::PinLocked {
                token,
                source: None,
            }
        } else {
            Error::PinIncorrect {
                token,
                source: CkError::Pkcs11(RvError::PinIncorrect, Function::Login),
            }
        }
    }
}

/// An open session with the key found in it.
struct Live {
    session: Session,
    token: SelectedToken,
    key: KeyObject,
    mechanism: SignMechanism,
    verify_next: bool,
}

/// Copies the token filter out of a URI: its library, slot and token attributes.
fn token_filter(uri: &Pkcs11Uri) -> Pkcs11Uri {
    let mut filter = uri.clone();
    filter.clear_object_and_query();
    filter
}

impl Pkcs11Signer {
    /// Loads the module, finds the certificate and its private key, builds the chain and
    /// checks with one probe signature that the key matches the certificate.
    ///
    /// The module stays initialised after the signer is dropped, because other parts of
    /// the process may share it. This crate never calls `C_Finalize`.
    pub fn open(config: Pkcs11Config) -> Result<Self, Error> {
        config.validate()?;
        let module = config.resolve_module()?;
        let pin = config.resolve_pin()?;
        let pkcs11 = connect::load_module(&module)?;
        let certificate_name = config.certificate_name();

        let found = find_certificate(&pkcs11, &config, pin.as_ref())?;
        let leaf =
            Certificate::from_der(found.der, &certificate_name).map_err(Error::Certificate)?;
        let key_lookup = match &config.private_key {
            Some(uri) if uri.id().is_some() || uri.object().is_some() => KeyLookup {
                id: uri.id().map(<[u8]>::to_vec),
                label: uri.object().map(<[u8]>::to_vec),
                fallback_label: None,
            },
            _ => found.key_lookup.unwrap_or(KeyLookup {
                id: None,
                label: None,
                fallback_label: None,
            }),
        };

        let key_side = open_key_token(&pkcs11, config.private_key.as_ref(), found.token_side)?;
        let live = connect_key(
            &pkcs11,
            key_side.token,
            key_side.session,
            key_side.logged_in,
            &key_lookup,
            pin.as_ref(),
            config.reuse_pin,
            &leaf,
            &certificate_name,
        )?;

        let mut candidates = key_side.chain_candidates;
        if candidates.is_empty() {
            candidates = connect::token_certificates(&live.session, &live.token);
        }
        let chain = build_chain(&leaf, &config.intermediates, candidates)?;

        let token_summary = live.token.summary.clone();
        let signer = Pkcs11Signer {
            pkcs11,
            module,
            key_filter: key_side.filter,
            key_lookup,
            pin,
            reuse_pin: config.reuse_pin,
            certificate: leaf,
            certificate_name,
            chain,
            state: Mutex::new(State {
                live: Some(live),
                pin_rejected: None,
                last_token: Some(token_summary),
            }),
        };
        ra_signer::check_key_matches(&signer, &signer.certificate_name).map_err(|error| {
            let key = signer.key_name();
            from_signer_error(error, &key)
        })?;
        Ok(signer)
    }

    /// Signs `message` like [`Signer::sign`] but returns this crate's error type.
    pub fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let mut state = self.lock();
        if let Some(failure) = &state.pin_rejected {
            return Err(failure.to_error());
        }
        let had_session = state.live.is_some();
        let result = match self.sign_in_state(&mut state, message) {
            Err(error) if had_session && error.needs_reconnect() => {
                log::warn!(
                    "{error} ({}); reopening the PKCS#11 session once",
                    code_text(&error)
                );
                discard(state.live.take(), &error);
                self.sign_in_state(&mut state, message)
            }
            other => other,
        };
        if let Err(error) = &result {
            if let Error::PinIncorrect { token, .. } | Error::PinLocked { token, .. } = error {
                log::warn!(
                    "{token} rejected the PIN; this signer sends no further logins, so the \
                     token cannot lock through it"
                );
                state.pin_rejected = Some(PinFailure {
                    token: token.clone(),
                    locked: matches!(error, Error::PinLocked { .. }),
                });
                state.live = None;
            } else if error.needs_reconnect() {
                discard(state.live.take(), error);
            }
        }
        result
    }

    /// Returns the token the signer uses now, or last used when its session is closed.
    pub fn token(&self) -> Option<TokenSummary> {
        self.lock().last_token.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves at worst a stale session, which the
        // next signature replaces. The state itself stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key_name(&self) -> String {
        let state = self.lock();
        match &state.live {
            Some(live) => format!(
                "private key {} on {}",
                describe_object(&live.key.id, &live.key.label),
                live.token.name()
            ),
            None => "the private key".into(),
        }
    }

    fn sign_in_state(&self, state: &mut State, message: &[u8]) -> Result<Vec<u8>, Error> {
        let live = match state.live.take() {
            Some(live) => live,
            None => {
                let live = self.reconnect(state.last_token.as_ref())?;
                state.last_token = Some(live.token.summary.clone());
                live
            }
        };
        let live = state.live.insert(live);
        let context_pin = if live.key.always_authenticate {
            self.pin.as_ref()
        } else {
            None
        };
        let name = live.token.name();
        let signature =
            live.mechanism
                .sign(&live.session, live.key.handle, message, context_pin, &name)?;
        if live.verify_next {
            if !ra_signer::verify_signature(&self.certificate, message, &signature) {
                let key = format!(
                    "private key {} on {}",
                    describe_object(&live.key.id, &live.key.label),
                    name
                );
                state.live = None;
                return Err(Error::KeyMismatch {
                    certificate: self.certificate_name.clone(),
                    key,
                });
            }
            live.verify_next = false;
        }
        Ok(signature)
    }

    /// Selects the token again, opens a session, logs in and finds the key.
    fn reconnect(&self, previous: Option<&TokenSummary>) -> Result<Live, Error> {
        connect::initialize(&self.pkcs11).map_err(|source| Error::ModuleLoad {
            path: self.module.clone(),
            source,
        })?;
        let token = token::select(&self.pkcs11, &self.key_filter)?;
        if let Some(previous) = previous
            && previous.serial != token.summary.serial
        {
            log::warn!(
                "PKCS#11 token changed from serial {} to {}; the next signature is checked \
                 against the certificate",
                previous.serial,
                token.summary.serial
            );
        }
        let session = connect::open_session(&self.pkcs11, &token)?;
        let mut live = connect_key(
            &self.pkcs11,
            token,
            session,
            false,
            &self.key_lookup,
            self.pin.as_ref(),
            self.reuse_pin,
            &self.certificate,
            &self.certificate_name,
        )?;
        live.verify_next = true;
        Ok(live)
    }
}

/// The end-entity certificate as [`Pkcs11Signer::open`] found it.
struct FoundCertificate {
    der: Vec<u8>,
    /// How to find the key from the certificate object, when it came from a token.
    key_lookup: Option<KeyLookup>,
    /// The certificate's token and session, when it came from a token.
    token_side: Option<TokenSide>,
}

/// A token with an open session.
struct TokenSide {
    token: SelectedToken,
    session: Session,
    logged_in: bool,
    filter: Pkcs11Uri,
}

/// The key's token with an open session, and chain candidates read from the
/// certificate's token when that is another one.
struct KeySide {
    token: SelectedToken,
    session: Session,
    logged_in: bool,
    filter: Pkcs11Uri,
    chain_candidates: Vec<Certificate>,
}

/// Reads the certificate from its token, or takes the caller's DER.
fn find_certificate(
    pkcs11: &Pkcs11,
    config: &Pkcs11Config,
    pin: Option<&Zeroizing<String>>,
) -> Result<FoundCertificate, Error> {
    let uri = match &config.certificate {
        CertificateSource::Token(uri) => uri,
        CertificateSource::Der(der) => {
            return Ok(FoundCertificate {
                der: der.clone(),
                key_lookup: None,
                token_side: None,
            });
        }
    };
    let token = token::select(pkcs11, uri)?;
    let session = connect::open_session(pkcs11, &token)?;
    let mut logged_in = false;
    let object = connect::find_certificate(
        &session,
        &token,
        uri.id(),
        uri.object(),
        pin,
        &mut logged_in,
    )?;
    log::info!(
        "using certificate {} on {}",
        describe_object(&object.id, &object.label),
        token.name()
    );
    Ok(FoundCertificate {
        key_lookup: Some(KeyLookup::from_certificate(&object)),
        der: object.der,
        token_side: Some(TokenSide {
            token,
            session,
            logged_in,
            filter: token_filter(uri),
        }),
    })
}

/// Opens the key's token: the certificate's, unless the key URI names another one.
fn open_key_token(
    pkcs11: &Pkcs11,
    key_uri: Option<&Pkcs11Uri>,
    certificate_side: Option<TokenSide>,
) -> Result<KeySide, Error> {
    let key_names_token = key_uri.is_some_and(Pkcs11Uri::has_token_attributes);
    if let Some(side) = certificate_side {
        if !key_names_token {
            return Ok(KeySide {
                token: side.token,
                session: side.session,
                logged_in: side.logged_in,
                filter: side.filter,
                chain_candidates: Vec::new(),
            });
        }
        let filter = token_filter(key_uri.unwrap_or(&Pkcs11Uri::default()));
        let token = token::select(pkcs11, &filter)?;
        if token.slot == side.token.slot {
            return Ok(KeySide {
                token,
                session: side.session,
                logged_in: side.logged_in,
                filter,
                chain_candidates: Vec::new(),
            });
        }
        let chain_candidates = connect::token_certificates(&side.session, &side.token);
        drop(side.session);
        let session = connect::open_session(pkcs11, &token)?;
        return Ok(KeySide {
            token,
            session,
            logged_in: false,
            filter,
            chain_candidates,
        });
    }
    let filter = token_filter(key_uri.unwrap_or(&Pkcs11Uri::default()));
    let token = token::select(pkcs11, &filter)?;
    let session = connect::open_session(pkcs11, &token)?;
    Ok(KeySide {
        token,
        session,
        logged_in: false,
        filter,
        chain_candidates: Vec::new(),
    })
}

/// Logs in when needed, finds the key and picks the mechanism.
#[allow(clippy::too_many_arguments)] // Each argument is a distinct input of one step.
fn connect_key(
    pkcs11: &Pkcs11,
    token: SelectedToken,
    session: Session,
    logged_in: bool,
    lookup: &KeyLookup,
    pin: Option<&Zeroizing<String>>,
    reuse_pin: bool,
    certificate: &Certificate,
    certificate_name: &str,
) -> Result<Live, Error> {
    if !logged_in && (token.flags.login_required || pin.is_some()) {
        connect::login(&session, &token, pin)?;
    }
    let key = connect::find_key(&session, &token, lookup)?;
    let kind = certificate.key_kind();
    connect::check_key_type(&key, kind, certificate_name)?;
    let key_name = format!(
        "private key {} on {}",
        describe_object(&key.id, &key.label),
        token.name()
    );
    if key.always_authenticate {
        if !reuse_pin {
            return Err(Error::ReusePinRequired { key: key_name });
        }
        if pin.is_none() {
            return Err(Error::PinRequired {
                token: token.name(),
            });
        }
    }
    let mechanism = connect::choose_mechanism(pkcs11, &token, kind, &key)?;
    log::info!(
        "signing with {key_name} using {}{}",
        mechanism.name(),
        if key.always_authenticate {
            ", logging in before each signature"
        } else {
            ""
        }
    );
    Ok(Live {
        session,
        token,
        key,
        mechanism,
        verify_next: false,
    })
}

/// Builds the chain from the caller's intermediates first, then the token's certificates.
fn build_chain(
    leaf: &Certificate,
    intermediates: &[Vec<u8>],
    token_certificates: Vec<Certificate>,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut candidates = Vec::with_capacity(intermediates.len() + token_certificates.len());
    for (index, der) in intermediates.iter().enumerate() {
        let name = format!("intermediate certificate {} given by the caller", index + 1);
        candidates.push(Certificate::from_der(der.clone(), &name).map_err(Error::Certificate)?);
    }
    candidates.extend(token_certificates);
    let chain = ra_signer::build_chain(leaf, &candidates);
    for link in &chain {
        log::debug!("chain certificate: {}", link.subject());
    }
    Ok(chain.into_iter().map(Certificate::into_der).collect())
}

/// Drops a session after `error`. A session handle the module no longer recognises is leaked
/// instead of closed: cryptoki 0.12 logs an error for every failed `C_CloseSession` on
/// drop, which would report a recovered failure as a new one. The leak is one small
/// struct and a reference count on the module per reconnect.
fn discard(live: Option<Live>, error: &Error) {
    if let Some(live) = live
        && error.session_is_gone()
    {
        std::mem::forget(live.session);
    }
}

fn code_text(error: &Error) -> String {
    match error.pkcs11_code() {
        Some((rv, function)) => format!("{rv:?} from {function:?}"),
        None => "no PKCS#11 code".into(),
    }
}

impl Signer for Pkcs11Signer {
    fn certificate(&self) -> &[u8] {
        self.certificate.der()
    }

    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn algorithm(&self) -> Algorithm {
        self.certificate.key_kind().algorithm()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ra_signer::Error> {
        self.sign_message(message).map_err(Into::into)
    }
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("module", &self.module)
            .field("token", &self.key_filter)
            .field("certificate", &self.certificate_name)
            .field("chain_len", &self.chain.len())
            .field("pin", &self.pin.as_ref().map(|_| "REDACTED"))
            .finish_non_exhaustive()
    }
}
