//! Clock skew: reading the service's `Date` header and deciding when a rejection is about
//! the request's date.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Skew below this is left alone; the service accepts 5 minutes either way.
pub const IGNORED_SKEW_SECS: i64 = 60;

/// Returns whether a rejection message reports the signature date is out of range
/// ("Signature expired", "Signature not yet current", "request date").
pub fn is_date_rejection(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "signature expired",
        "not yet current",
        "request date",
        "clock skew",
        "x-amz-date",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Parses an HTTP date in IMF-fixdate form (RFC 9110, section 5.6.7), for example
/// `Fri, 04 Dec 2026 12:00:00 GMT`.
pub fn parse_http_date(value: &str) -> Option<OffsetDateTime> {
    let rest = value.trim().split_once(", ")?.1;
    let mut fields = rest.split(' ');
    let day: u8 = fields.next()?.parse().ok()?;
    let month = match fields.next()? {
        "Jan" => Month::January,
        "Feb" => Month::February,
        "Mar" => Month::March,
        "Apr" => Month::April,
        "May" => Month::May,
        "Jun" => Month::June,
        "Jul" => Month::July,
        "Aug" => Month::August,
        "Sep" => Month::September,
        "Oct" => Month::October,
        "Nov" => Month::November,
        "Dec" => Month::December,
        _ => return None,
    };
    let year: i32 = fields.next()?.parse().ok()?;
    let mut clock = fields.next()?.split(':').map(|f| f.parse::<u8>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if fields.next()? != "GMT" {
        return None;
    }
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_http_date_reads_imf_fixdate() {
        let t = parse_http_date("Fri, 04 Dec 2026 12:00:05 GMT").unwrap();
        assert_eq!(
            crate::credentials::format_expiration(t),
            "2026-12-04T12:00:05Z"
        );
        assert!(parse_http_date("yesterday").is_none());
        assert!(parse_http_date("Fri, 04 Dec 2026 12:00:05 CET").is_none());
    }

    #[test]
    fn is_date_rejection_matches_service_messages() {
        assert!(is_date_rejection(
            "Signature expired: 20261204T120000Z is now earlier than ..."
        ));
        assert!(is_date_rejection("Signature not yet current"));
        assert!(!is_date_rejection("Untrusted signing certificate"));
    }
}
