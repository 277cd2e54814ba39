//! Random tokens: the session tokens the IMDS endpoint issues and the ECS authorization
//! token. Only SHA-256 digests of issued tokens are kept, and tokens are compared by
//! digest, so lookups and comparisons take no time that depends on the secret.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Maximum number of unexpired IMDS session tokens kept. When full, issuing a token drops
/// the one closest to expiry, whose holder then gets 401 and fetches a new token as the
/// SDKs do.
pub const MAX_TOKENS: usize = 1024;

/// Random bytes in a token: 256 bits, rendered as 43 characters of unpadded base64url.
const TOKEN_BYTES: usize = 32;

type Digest = [u8; 32];

/// Generates a random token: 32 bytes from the system's CSPRNG, as unpadded base64url.
pub fn random_token(rng: &SystemRandom) -> Result<Zeroizing<String>, ring::error::Unspecified> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    rng.fill(&mut bytes[..])?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]),
    ))
}

/// Compares two tokens without an early exit on the first differing byte.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    let (a, b) = (digest_of(a), digest_of(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn digest_of(token: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// The IMDS session tokens issued and not yet expired, by digest. Expiry uses the
/// monotonic clock, so a wall clock set late by NTP does not cut tokens short.
#[derive(Debug)]
pub struct TokenTable {
    rng: SystemRandom,
    issued: Mutex<HashMap<Digest, Instant>>,
}

impl Default for TokenTable {
    fn default() -> TokenTable {
        TokenTable {
            rng: SystemRandom::new(),
            issued: Mutex::new(HashMap::new()),
        }
    }
}

impl TokenTable {
    /// Issues a token valid for `ttl` from `now`.
    pub fn issue(
        &self,
        ttl: Duration,
        now: Instant,
    ) -> Result<Zeroizing<String>, ring::error::Unspecified> {
        let token = random_token(&self.rng)?;
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        if issued.len() >= MAX_TOKENS {
            issued.retain(|_, expiry| *expiry > now);
        }
        if issued.len() >= MAX_TOKENS {
            let oldest = issued
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(key, _)| *key);
            if let Some(key) = oldest {
                issued.remove(&key);
            }
        }
        issued.insert(digest_of(&token), now + ttl);
        Ok(token)
    }

    /// Returns whether `token` was issued here and has not expired at `now`. An expired
    /// token is removed.
    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        let key = digest_of(token);
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get(&key) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                issued.remove(&key);
                false
            }
            None => false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.issued.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_token_is_43_url_safe_chars() {
        let rng = SystemRandom::new();
        let a = random_token(&rng).unwrap();
        let b = random_token(&rng).unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{}",
            a.as_str()
        );
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_equal_compares_whole_value() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("", "a"));
    }

    #[test]
    fn issued_token_expires_after_ttl() {
        let table = TokenTable::default();
        let start = Instant::now();
        let token = table.issue(Duration::from_secs(10), start).unwrap();
        assert!(table.is_valid(&token, start));
        assert!(table.is_valid(&token, start + Duration::from_secs(9)));
        assert!(!table.is_valid(&token, start + Duration::from_secs(10)));
        assert_eq!(table.len(), 0, "expired token kept");
        assert!(!table.is_valid("not-issued", start));
    }

    #[test]
    fn full_table_drops_token_closest_to_expiry() {
        let table = TokenTable::default();
        let start = Instant::now();
        let first = table.issue(Duration::from_secs(5), start).unwrap();
        for _ in 1..MAX_TOKENS {
            table.issue(Duration::from_secs(100), start).unwrap();
        }
        assert_eq!(table.len(), MAX_TOKENS);
        let newest = table.issue(Duration::from_secs(100), start).unwrap();
        assert_eq!(table.len(), MAX_TOKENS);
        assert!(!table.is_valid(&first, start), "oldest token not dropped");
        assert!(table.is_valid(&newest, start));
    }

    #[test]
    fn full_table_drops_expired_tokens_first() {
        let table = TokenTable::default();
        let start = Instant::now();
        for _ in 0..MAX_TOKENS {
            table.issue(Duration::from_secs(1), start).unwrap();
        }
        let later = start + Duration::from_secs(2);
        table.issue(Duration::from_secs(100), later).unwrap();
        assert_eq!(table.len(), 1);
    }
}
