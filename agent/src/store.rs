//! The latest good credentials, shared between the refresh loop and the local endpoints.

use std::sync::RwLock;

use time::OffsetDateTime;

use crate::credentials::Credentials;

/// Credentials with the time they were obtained.
#[derive(Debug, Clone)]
pub struct Entry {
    pub credentials: Credentials,
    pub obtained: OffsetDateTime,
}

/// Holds the last good credentials. The refresh loop replaces them only with complete,
/// newer credentials; readers get a copy or nothing.
#[derive(Debug, Default)]
pub struct CredentialStore {
    latest: RwLock<Option<Entry>>,
}

impl CredentialStore {
    /// Replaces the stored credentials.
    pub fn set(&self, credentials: Credentials, obtained: OffsetDateTime) {
        let mut latest = self.latest.write().unwrap_or_else(|e| e.into_inner());
        *latest = Some(Entry {
            credentials,
            obtained,
        });
    }

    /// Returns the stored credentials if they are still valid at `now`.
    pub fn valid_at(&self, now: OffsetDateTime) -> Option<Entry> {
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        latest
            .as_ref()
            .filter(|entry| entry.credentials.expiration > now)
            .cloned()
    }
}
