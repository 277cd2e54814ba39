//! Timestamps in the three text forms the protocol uses. All times are seconds since the
//! Unix epoch, UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, Weekday};

/// Returns the system clock in seconds since the Unix epoch.
pub(crate) fn system_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn to_datetime(unix: i64) -> OffsetDateTime {
    // The conversion fails only for clock offsets of about ten thousand years or more.
    // No test sets one, and the epoch keeps the output well-formed if one does.
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Parses an `X-Amz-Date` value, `YYYYMMDDTHHMMSSZ`.
pub(crate) fn parse_amz_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let day = u8::try_from(digits(6..8)?).ok()?;
    let hour = u8::try_from(digits(9..11)?).ok()?;
    let minute = u8::try_from(digits(11..13)?).ok()?;
    let second = u8::try_from(digits(13..15)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Formats `unix` as an `X-Amz-Date` value, `YYYYMMDDTHHMMSSZ`.
pub(crate) fn format_amz_date(unix: i64) -> String {
    let t = to_datetime(unix);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Formats `unix` as the ISO 8601 form of a credentials expiration, `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn format_iso8601(unix: i64) -> String {
    let t = to_datetime(unix);
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

/// Formats `unix` as an HTTP `Date` header value (RFC 9110 IMF-fixdate), such as
/// `Fri, 04 Dec 2026 12:00:00 GMT`.
pub(crate) fn format_http_date(unix: i64) -> String {
    let t = to_datetime(unix);
    let weekday = match t.weekday() {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    };
    let month = match t.month() {
        Month::January => "Jan",
        Month::February => "Feb",
        Month::March => "Mar",
        Month::April => "Apr",
        Month::May => "May",
        Month::June => "Jun",
        Month::July => "Jul",
        Month::August => "Aug",
        Month::September => "Sep",
        Month::October => "Oct",
        Month::November => "Nov",
        Month::December => "Dec",
    };
    format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-04T12:00:00Z, the timestamp of the interoperability vectors.
    const VECTOR_TIME: i64 = 1_796_385_600;

    #[test]
    fn amz_date_round_trips() {
        assert_eq!(parse_amz_date("20261204T120000Z"), Some(VECTOR_TIME));
        assert_eq!(format_amz_date(VECTOR_TIME), "20261204T120000Z");
    }

    #[test]
    fn amz_date_rejects_malformed() {
        for text in [
            "",
            "20261204T120000",
            "20261204 120000Z",
            "2026-12-04T12:00:00Z",
            "20261304T120000Z",
            "20261204T250000Z",
            "2026120+T120000Z",
        ] {
            assert_eq!(parse_amz_date(text), None, "{text:?}");
        }
    }

    #[test]
    fn iso8601_and_http_date_format() {
        assert_eq!(format_iso8601(VECTOR_TIME + 3600), "2026-12-04T13:00:00Z");
        assert_eq!(
            format_http_date(VECTOR_TIME),
            "Fri, 04 Dec 2026 12:00:00 GMT"
        );
    }
}
