//! A ready-to-use CreateSession client: signer, request, endpoint and HTTPS agent, with a
//! short bounded retry for one-shot commands.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::arn::Identity;
use crate::cli::{Options, required};
use crate::credentials::{Credentials, format_expiration};
use crate::error::Error;
use crate::http::{self, HttpOptions};
use crate::session::{self, Endpoint, SessionRequest};
use crate::signers::{self, Loaded};

/// Attempts of one `fetch` when failures are transient; each attempt is signed anew.
const ATTEMPTS: u32 = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to call CreateSession.
#[derive(Debug)]
pub struct Client {
    pub loaded: Loaded,
    pub request: SessionRequest,
    pub endpoint: Endpoint,
    http: ureq::Agent,
}

impl Client {
    /// Validates the options, opens the signer and prepares the HTTPS agent.
    pub fn from_options(options: &Options) -> Result<Client, Error> {
        let identity = Identity::new(
            required(&options.trust_anchor_arn, "trust-anchor-arn")?,
            required(&options.profile_arn, "profile-arn")?,
            required(&options.role_arn, "role-arn")?,
            options.region.as_deref(),
        )?;
        let endpoint = match &options.endpoint {
            Some(url) => Endpoint::parse(url)?,
            None => Endpoint::parse(&identity.default_endpoint())?,
        };
        let request = SessionRequest::new(
            identity,
            options.session_duration,
            options.role_session_name.clone(),
        )?;
        let ca_bundle = options.ca_bundle.clone().or_else(|| {
            std::env::var_os("AWS_CA_BUNDLE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let http = http::agent(&HttpOptions {
            ca_bundle,
            no_verify: options.no_verify_ssl,
            timeout: Some(
                options
                    .request_timeout
                    .map(Duration::from_secs)
                    .unwrap_or(REQUEST_TIMEOUT),
            ),
        })?;
        let loaded = signers::open(options)?;
        Ok(Client {
            loaded,
            request,
            endpoint,
            http,
        })
    }

    /// Makes one signed attempt at time `now`.
    pub fn attempt(&self, now: OffsetDateTime) -> Result<session::SessionResponse, Error> {
        let signed = session::sign_request(
            self.loaded.signer.as_ref(),
            &self.loaded.certificate,
            &self.request,
            &self.endpoint,
            now,
        )?;
        log::debug!(
            "POST {} (profile {}, role {}, X-Amz-Date {})",
            self.endpoint.url,
            self.request.identity.profile_arn,
            self.request.identity.role_arn,
            session::amz_date(now)
        );
        session::send(&self.http, &self.endpoint, &signed)
    }

    /// Gets credentials, retrying transient failures a few times with a short backoff.
    pub fn fetch(&self) -> Result<Credentials, Error> {
        let mut attempt = 1;
        loop {
            match self.attempt(OffsetDateTime::now_utc()) {
                Ok(response) => {
                    let credentials = response.credentials;
                    log::info!(
                        "credentials issued for role {} via profile {}, expiring {}",
                        self.request.identity.role_arn,
                        self.request.identity.profile_arn,
                        format_expiration(credentials.expiration)
                    );
                    return Ok(credentials);
                }
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    let wait = Duration::from_secs(1 << attempt);
                    log::warn!(
                        "attempt {attempt} of {ATTEMPTS} failed: {}; retrying in {}s",
                        crate::error::report(&e),
                        wait.as_secs()
                    );
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
