//! When to refresh and how long to back off: pure functions of time, tested without
//! sleeping.

use std::time::Duration;

use crate::error::Error;

/// How long before expiry to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Margin {
    /// The larger of 5 minutes and 10 % of the session lifetime.
    Default,
    /// A fixed number of seconds.
    Seconds(u64),
    /// A share of the session lifetime, 1 to 90 percent.
    Percent(u8),
}

impl Margin {
    /// Parses `--refresh-margin`: seconds (`300`) or a percentage of the lifetime (`10%`).
    pub fn parse(text: &str) -> Result<Margin, Error> {
        let invalid = || {
            Error::Usage(format!(
                "invalid --refresh-margin {text:?}: expected seconds such as 300 or a \
                 percentage of the session lifetime from 1% to 90%"
            ))
        };
        if let Some(percent) = text.strip_suffix('%') {
            let p: u8 = percent.trim().parse().map_err(|_| invalid())?;
            if !(1..=90).contains(&p) {
                return Err(invalid());
            }
            return Ok(Margin::Percent(p));
        }
        text.trim()
            .parse()
            .map(Margin::Seconds)
            .map_err(|_| invalid())
    }

    /// Returns the margin in seconds for a session of `lifetime` seconds.
    pub fn seconds(self, lifetime: i64) -> i64 {
        let lifetime = lifetime.max(0);
        match self {
            Margin::Default => (lifetime / 10).max(300),
            Margin::Seconds(s) => i64::try_from(s).unwrap_or(i64::MAX),
            Margin::Percent(p) => lifetime * i64::from(p) / 100,
        }
    }
}

/// Exponential backoff: retry `n` waits a random time up to `min(cap, base * 2^(n-1))`,
/// never less than the loop's minimum interval.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Full jitter draws from the whole range. Without it the wait is at least half the
    /// ceiling, so a rejected request is not retried soon by chance.
    pub full_jitter: bool,
}

impl Backoff {
    /// Returns the upper bound of the wait before retry number `failures` (1-based).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Timing settings of the refresh loop.
#[derive(Debug, Clone)]
pub struct Settings {
    pub margin: Margin,
    /// Minimum wait between scheduled attempts. A SIGHUP reload still refreshes at once.
    pub min_interval: Duration,
    /// Network failures, 5xx, throttling, token busy.
    pub transient: Backoff,
    /// The service rejected the request, or the configuration broke while running.
    pub rejected: Backoff,
    /// Warn when the certificate expires within this time.
    pub cert_warning: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            margin: Margin::Default,
            min_interval: Duration::from_secs(10),
            transient: Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(300),
                full_jitter: true,
            },
            rejected: Backoff {
                base: Duration::from_secs(300),
                cap: Duration::from_secs(3600),
                full_jitter: false,
            },
            cert_warning: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A small pseudo-random source for jitter (xorshift64*). Jitter only spreads a fleet's
/// requests over time, so it needs no cryptographic strength.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeds from the system's random source.
    pub fn from_entropy() -> Jitter {
        let mut seed = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        Jitter::with_seed(u64::from_le_bytes(seed))
    }

    /// Creates a fixed sequence, for tests.
    pub fn with_seed(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// Returns a value in `0..=max`.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(value % millis.saturating_add(1))
    }
}

impl Settings {
    /// Returns the wait after a success: until the margin (plus up to a quarter margin of
    /// jitter) before expiry, and at least the minimum interval.
    pub fn after_success(&self, lifetime_secs: i64, jitter: &mut Jitter) -> Duration {
        let margin = self.margin.seconds(lifetime_secs);
        let spread = jitter.up_to(Duration::from_secs(u64::try_from(margin / 4).unwrap_or(0)));
        let wait = u64::try_from(lifetime_secs - margin).unwrap_or(0);
        Duration::from_secs(wait)
            .saturating_sub(spread)
            .max(self.min_interval)
    }

    /// Returns the wait after failure number `failures` of the given kind.
    pub fn after_failure(&self, backoff: Backoff, failures: u32, jitter: &mut Jitter) -> Duration {
        let ceiling = backoff.ceiling(failures);
        let wait = if backoff.full_jitter {
            jitter.up_to(ceiling)
        } else {
            ceiling / 2 + jitter.up_to(ceiling / 2)
        };
        wait.max(self.min_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_parse_and_default() {
        assert_eq!(Margin::Default.seconds(3600), 360);
        assert_eq!(Margin::Default.seconds(900), 300);
        assert_eq!(Margin::parse("10%").unwrap().seconds(43200), 4320);
        assert_eq!(Margin::parse("120").unwrap().seconds(3600), 120);
        assert!(Margin::parse("95%").is_err());
        assert!(Margin::parse("soon").is_err());
    }

    #[test]
    fn after_success_refreshes_before_expiry_with_bounded_jitter() {
        let settings = Settings::default();
        let mut jitter = Jitter::with_seed(7);
        for _ in 0..100 {
            let wait = settings.after_success(3600, &mut jitter).as_secs();
            assert!((3600 - 360 - 90..=3600 - 360).contains(&wait), "{wait}");
        }
    }

    #[test]
    fn after_success_past_expiry_waits() {
        let settings = Settings::default();
        let mut jitter = Jitter::with_seed(7);
        assert_eq!(
            settings.after_success(-500, &mut jitter),
            settings.min_interval
        );
        assert_eq!(
            settings.after_success(30, &mut jitter),
            settings.min_interval
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Settings::default().transient;
        assert_eq!(b.ceiling(1), Duration::from_secs(5));
        assert_eq!(b.ceiling(3), Duration::from_secs(20));
        assert_eq!(b.ceiling(30), Duration::from_secs(300));
        let settings = Settings::default();
        let mut jitter = Jitter::with_seed(3);
        for n in 1..40 {
            let wait = settings.after_failure(b, n, &mut jitter);
            assert!(wait >= settings.min_interval, "{n}: {wait:?}");
            assert!(wait <= Duration::from_secs(300), "{n}: {wait:?}");
        }
        let rejected = settings.rejected;
        for n in 1..10 {
            let wait = settings.after_failure(rejected, n, &mut jitter);
            assert!(
                wait >= rejected.ceiling(n) / 2,
                "{n}: {wait:?} {:?}",
                rejected.ceiling(n)
            );
            assert!(wait <= Duration::from_secs(3600));
        }
    }
}
