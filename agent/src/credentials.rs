//! Temporary credentials and their `credential_process` JSON form.

use serde::Serialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::Error;

/// Temporary AWS credentials. The secret key and session token are zeroized on drop and
/// redacted from `Debug`.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Zeroizing<String>,
    pub expiration: OffsetDateTime,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &format_expiration(self.expiration))
            .finish()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput<'a> {
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    session_token: &'a str,
    expiration: &'a str,
}

impl Credentials {
    /// Renders the one JSON object that `credential_process` prints (AWS SDKs read
    /// `Version` 1 and these four fields), followed by no newline.
    pub fn process_json(&self) -> Zeroizing<String> {
        let expiration = format_expiration(self.expiration);
        let output = ProcessOutput {
            version: 1,
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret_access_key,
            session_token: &self.session_token,
            expiration: &expiration,
        };
        // Serialising a struct of strings and an integer cannot fail.
        Zeroizing::new(serde_json::to_string(&output).unwrap_or_default())
    }

    /// Returns seconds left until expiry at `now` (negative once expired).
    pub fn seconds_left(&self, now: OffsetDateTime) -> i64 {
        (self.expiration - now).whole_seconds()
    }
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ`, the form AWS SDKs parse.
pub fn format_expiration(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an RFC 3339 expiration (`Z` or a numeric offset, fractional seconds allowed).
pub fn parse_expiration(value: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| {
            Error::transient(format!(
                "the service returned an expiration that cannot be parsed: {value:?} ({e})"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_expiration_accepts_offsets_and_fractions() {
        for value in [
            "2026-12-04T13:00:00Z",
            "2026-12-04T13:00:00.123Z",
            "2026-12-04T13:00:00+00:00",
            "2026-12-04T14:00:00+01:00",
        ] {
            let t = parse_expiration(value).unwrap();
            assert_eq!(format_expiration(t), "2026-12-04T13:00:00Z", "{value}");
        }
        assert!(parse_expiration("tomorrow").is_err());
    }

    #[test]
    fn process_json_has_the_five_fields() {
        let creds = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Zeroizing::new("secret".into()),
            session_token: Zeroizing::new("token".into()),
            expiration: parse_expiration("2026-12-04T13:00:00Z").unwrap(),
        };
        let value: serde_json::Value = serde_json::from_str(&creds.process_json()).unwrap();
        assert_eq!(value["Version"], 1);
        assert_eq!(value["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(value["SecretAccessKey"], "secret");
        assert_eq!(value["SessionToken"], "token");
        assert_eq!(value["Expiration"], "2026-12-04T13:00:00Z");
        assert!(!format!("{creds:?}").contains("secret\""));
    }
}
