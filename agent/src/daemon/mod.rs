//! The refresh loop behind `update` and `serve`: refresh ahead of expiry, sort failures
//! by what to do next, keep the last good credentials in place, and survive clock skew,
//! an unset clock and certificate rotation.

pub mod clock;
pub mod notify;
pub mod policy;
pub mod skew;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::client::Client;
use crate::credentials::{Credentials, format_expiration};
use crate::error::{Error, report};
use crate::outputs::{self, Output};
use crate::session::SessionResponse;
use crate::store::CredentialStore;
use clock::{Clock, Event};
use notify::Notifier;
use policy::{Jitter, Settings};
use status::Status;

/// A time this program cannot run before: 2026-01-01T00:00:00Z. A device clock earlier
/// than this (or than the certificate's notBefore) is unset, not skewed.
pub const TIME_FLOOR: i64 = 1_767_225_600;

/// Builds a fresh client (re-reading certificate, chain and key) for each attempt.
pub type OpenClient<'a> = Box<dyn FnMut() -> Result<Client, Error> + 'a>;

/// The refresh loop and its state.
pub struct Refresher<'a> {
    settings: Settings,
    open: OpenClient<'a>,
    outputs: Vec<Output>,
    store: Option<Arc<CredentialStore>>,
    status_file: Option<PathBuf>,
    notifier: Notifier,
    jitter: Jitter,
    /// Seconds to add to the device clock when signing, measured from the service.
    skew: i64,
    failures: u32,
    status: Status,
    ever_succeeded: bool,
}

impl std::fmt::Debug for Refresher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("outputs", &self.outputs)
            .field("skew", &self.skew)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// Why an attempt failed, which decides the backoff.
enum Failure {
    Transient(Error),
    Rejected(Error),
}

impl<'a> Refresher<'a> {
    pub fn new(settings: Settings, open: OpenClient<'a>, outputs: Vec<Output>) -> Self {
        let status = Status {
            pid: std::process::id(),
            outputs: outputs
                .iter()
                .map(|o| o.path.display().to_string())
                .collect(),
            ..Status::default()
        };
        Refresher {
            settings,
            open,
            outputs,
            store: None,
            status_file: None,
            notifier: Notifier::default(),
            jitter: Jitter::from_entropy(),
            skew: 0,
            failures: 0,
            status,
            ever_succeeded: false,
        }
    }

    /// Also publishes credentials to `store` (for `serve`).
    pub fn with_store(mut self, store: Arc<CredentialStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Writes the status to `path` after every attempt.
    pub fn with_status_file(mut self, path: PathBuf) -> Self {
        self.status_file = Some(path);
        self
    }

    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Returns the measured clock offset in seconds.
    pub fn skew(&self) -> i64 {
        self.skew
    }

    /// Runs until a stop event. Returns an error only when the configuration is unusable
    /// before the first success, so that the service manager shows the failure.
    pub fn run(&mut self, clock: &dyn Clock) -> Result<(), Error> {
        let mut next = clock.now();
        let mut ready = false;
        loop {
            if clock.now() >= next {
                let wait = self.refresh(clock.now())?;
                next = clock.now() + wait;
                self.status.next_attempt = Some(format_expiration(next));
                self.write_status();
                if !ready {
                    self.notifier.ready();
                    ready = true;
                }
            }
            let remaining = (next - clock.now()).max(time::Duration::ZERO);
            let mut slice = Duration::try_from(remaining).unwrap_or(Duration::ZERO);
            if let Some(interval) = self.notifier.watchdog_interval() {
                slice = slice.min(interval);
            }
            match clock.wait(slice) {
                Some(Event::Stop) => {
                    log::info!("stopping");
                    self.notifier.stopping();
                    return Ok(());
                }
                Some(Event::Reload) => {
                    log::info!("reload requested: re-reading certificate, chain and key");
                    self.notifier.reloading();
                    next = clock.now();
                    ready = false;
                }
                None => self.notifier.watchdog(),
            }
        }
    }

    /// Makes one refresh attempt at `now` and returns the wait before the next one.
    pub fn refresh(&mut self, now: OffsetDateTime) -> Result<Duration, Error> {
        self.status.last_attempt = Some(format_expiration(now));
        let outcome = self.attempt(now);
        let wait = match outcome {
            Ok(credentials) => {
                self.failures = 0;
                self.status.last_error = None;
                self.status.consecutive_failures = 0;
                let lifetime = (credentials.expiration - now).whole_seconds();
                self.settings.after_success(lifetime, &mut self.jitter)
            }
            Err(Failure::Rejected(Error::Usage(message))) if !self.ever_succeeded => {
                self.notifier.status(&message);
                return Err(Error::Usage(message));
            }
            Err(failure) => {
                self.failures += 1;
                let (error, backoff) = match failure {
                    Failure::Transient(e) => (e, self.settings.transient),
                    Failure::Rejected(e) => (e, self.settings.rejected),
                };
                let wait = self
                    .settings
                    .after_failure(backoff, self.failures, &mut self.jitter);
                let text = report(&error);
                log::warn!(
                    "refresh failed ({} in a row): {text}; the last good credentials stay in \
                     place; retrying in {}s",
                    self.failures,
                    wait.as_secs()
                );
                self.notifier.status(&format!("refresh failing: {text}"));
                self.status.last_error = Some(text);
                self.status.consecutive_failures = self.failures;
                wait
            }
        };
        Ok(wait)
    }

    fn attempt(&mut self, now: OffsetDateTime) -> Result<Credentials, Failure> {
        let client = (self.open)().map_err(classify)?;
        self.status.profile_arn = client.request.identity.profile_arn.clone();
        self.status.role_arn = client.request.identity.role_arn.clone();
        let cert = &client.loaded.certificate;
        self.status.certificate_not_after = OffsetDateTime::from_unix_timestamp(cert.not_after())
            .ok()
            .map(format_expiration);

        let floor = cert.not_before().max(TIME_FLOOR);
        if now.unix_timestamp() < floor {
            return Err(Failure::Transient(Error::transient(format!(
                "the device clock ({}) is earlier than {}; it looks unset, so the agent \
                 waits for time synchronisation instead of calling the service",
                format_expiration(now),
                OffsetDateTime::from_unix_timestamp(floor)
                    .map(format_expiration)
                    .unwrap_or_default()
            ))));
        }
        let left = cert.not_after() - now.unix_timestamp();
        let warning = i64::try_from(self.settings.cert_warning.as_secs()).unwrap_or(i64::MAX);
        if left < warning {
            log::warn!(
                "certificate {} expires in {} days; install a renewed certificate (the agent \
                 re-reads it on every refresh and on SIGHUP)",
                cert.subject(),
                left / 86400
            );
        }

        let response = self.send_with_skew(&client, now)?;
        let credentials = response.credentials;
        if credentials.expiration <= now + time::Duration::seconds(self.skew) {
            return Err(Failure::Transient(Error::transient(format!(
                "the service returned credentials that expired at {}; keeping the previous ones",
                format_expiration(credentials.expiration)
            ))));
        }
        outputs::write_all(&self.outputs, &credentials).map_err(Failure::Transient)?;
        if let Some(store) = &self.store {
            store.set(credentials.clone(), now);
        }
        self.ever_succeeded = true;
        self.status.credentials_expiration = Some(format_expiration(credentials.expiration));
        self.status.last_refresh = Some(format_expiration(now));
        log::info!(
            "credentials refreshed for role {} via profile {}, expiring {}",
            client.request.identity.role_arn,
            client.request.identity.profile_arn,
            format_expiration(credentials.expiration)
        );
        Ok(credentials)
    }

    /// Sends one request signed at `now` plus the known skew. When the service rejects the
    /// date, measures the skew from its `Date` header and re-signs once.
    fn send_with_skew(
        &mut self,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<SessionResponse, Failure> {
        let signed_at = now + time::Duration::seconds(self.skew);
        match client.attempt(signed_at) {
            Err(Error::Rejected {
                ref message,
                date: Some(ref date),
                ..
            }) if skew::is_date_rejection(message) => {
                let measured = skew::parse_http_date(date)
                    .map(|server| (server - now).whole_seconds())
                    .filter(|m| (m - self.skew).abs() > skew::IGNORED_SKEW_SECS);
                let Some(measured) = measured else {
                    return client.attempt(signed_at).map_err(classify);
                };
                log::warn!(
                    "the device clock is {measured}s off the service's; re-signing with the \
                     service's time (set up time synchronisation to fix this)"
                );
                self.skew = measured;
                client
                    .attempt(now + time::Duration::seconds(measured))
                    .map_err(classify)
            }
            result => result.map_err(classify),
        }
    }

    fn write_status(&self) {
        if let Some(path) = &self.status_file
            && let Err(e) = self.status.write(path)
        {
            log::warn!("cannot write status file: {}", report(&e));
        }
    }
}

fn classify(error: Error) -> Failure {
    match error {
        e @ (Error::Transient { .. } | Error::Output { .. }) => Failure::Transient(e),
        // A token that is busy or was re-plugged counts as transient.
        Error::Signer(ref inner) if signer_is_transient(inner) => Failure::Transient(error),
        e => Failure::Rejected(e),
    }
}

/// Returns whether a signer failure may clear by itself (token busy, unplugged, session
/// lost). A rejected PIN or TPM password is not: retrying it soon only brings the token or
/// TPM closer to lockout, so it takes the long backoff.
fn signer_is_transient(error: &ra_signer::Error) -> bool {
    if !matches!(error, ra_signer::Error::Backend { .. }) {
        return false;
    }
    #[cfg(feature = "pkcs11")]
    if let Some(token_error) =
        std::error::Error::source(error).and_then(|s| s.downcast_ref::<ra_signer_pkcs11::Error>())
    {
        return !matches!(
            token_error.kind(),
            ra_signer_pkcs11::ErrorKind::Pin | ra_signer_pkcs11::ErrorKind::Config
        );
    }
    #[cfg(feature = "tpm")]
    if let Some(class) = ra_signer_tpm::classify(error) {
        return !matches!(
            class,
            ra_signer_tpm::ErrorClass::AuthFailure | ra_signer_tpm::ErrorClass::Lockout
        );
    }
    true
}
